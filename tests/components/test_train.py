"""Train stage: encoder, model folder contract, determinism, early stopping, DDP on CPU."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kubeloop.components.core.errors import DataError, SpecError
from kubeloop.components.core.spec import Spec, parse_spec
from kubeloop.components.train import task as train_task
from kubeloop.components.train.encoder import Encoder
from kubeloop.components.train.model import TabularPredictor
from kubeloop.components.train.params import resolve_params


def make_frame(n: int, task: str, seed: int = 0, flip: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    plan = rng.choice(["basic", "plus", "pro"], size=n)
    region = rng.choice(["north", "south"], size=n)
    score = 1.5 * x1 - x2 + (plan == "pro") * 1.0
    if flip:
        score = -score
    if task == "binary":
        label: Any = np.where(score + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    elif task == "multiclass":
        label = np.digitize(score, [-1.0, 1.0])  # 0, 1, 2
    else:
        label = 10.0 * score + 50.0 + rng.normal(size=n)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n) + seed * 100_000,
            "event_ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="min"),
            "x1": x1,
            "x2": x2,
            "plan": plan,
            "region": region,
            "label": label,
        }
    )


def make_spec(tmp_path: Path, task: str = "auto", **train: Any) -> Spec:
    return parse_spec(
        {
            "name": "t",
            "workdir": str(tmp_path / "work"),
            "data": {
                "source": str(tmp_path / "raw.csv"),
                "label": "label",
                "task": task,
                "entity": "customer_id",
                "timestamp": "event_ts",
            },
            "train": {
                "epochs": 3,
                "batch_size": 64,
                "hidden_units": [16],
                "device": "cpu",
                **train,
            },
        }
    )


def write_splits(
    tmp_path: Path, task: str, n: int = 400, flip_val: bool = False
) -> tuple[str, str]:
    train_p = tmp_path / "train.parquet"
    val_p = tmp_path / "val.parquet"
    make_frame(n, task, seed=1).to_parquet(train_p, index=False)
    make_frame(n // 4, task, seed=2, flip=flip_val).to_parquet(val_p, index=False)
    return str(train_p), str(val_p)


@pytest.mark.parametrize(
    ("task", "shape_cols", "metric"),
    [("binary", 2, "roc_auc"), ("multiclass", 3, "f1_macro"), ("regression", None, "rmse")],
)
def test_train_writes_loadable_predictor(
    tmp_path: Path, task: str, shape_cols: int | None, metric: str
) -> None:
    train_p, val_p = write_splits(tmp_path, task)
    spec = make_spec(tmp_path)
    res = train_task.run(spec, train_p, val_p, str(tmp_path / "model"))
    assert res.task == task
    assert res.val_metric_name == metric
    assert res.epochs_run == 3 and len(res.history) == 3
    assert res.device == "cpu" and res.precision == "fp32"
    assert res.samples_per_s > 0
    for f in ("model.pt", "model_config.json", "encoder.json", "checkpoints/best.pt"):
        assert (tmp_path / "model" / f).is_file(), f

    pred = TabularPredictor.load(tmp_path / "model")
    assert pred.task == task
    assert pred.features == ["x1", "x2", "plan", "region"]  # no id/timestamp/label
    test = make_frame(50, task, seed=3)
    out = pred.predict(test)
    if shape_cols is None:
        assert out.shape == (50,)
        # learned something in original units (label mean 50, scale ~20)
        assert abs(out.mean() - test["label"].mean()) < 15
    else:
        assert out.shape == (50, shape_cols)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
        assert ((out >= 0) & (out <= 1)).all()
    if task == "binary":
        assert pred.classes == ["no", "yes"]
        assert res.val_metric > 0.8  # an easy problem: AUC well above chance
    if task == "multiclass":
        assert pred.classes == [0, 1, 2]


def test_same_seed_same_model(tmp_path: Path) -> None:
    train_p, val_p = write_splits(tmp_path, "binary")
    spec = make_spec(tmp_path, dropout=0.2)
    a = train_task.run(spec, train_p, val_p, str(tmp_path / "a"))
    b = train_task.run(spec, train_p, val_p, str(tmp_path / "b"))
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    test = make_frame(64, "binary", seed=5)
    pa = TabularPredictor.load(tmp_path / "a").predict(test)
    pb = TabularPredictor.load(tmp_path / "b").predict(test)
    np.testing.assert_array_equal(pa, pb)
    # and a different seed really gives a different model
    other = make_spec(tmp_path, dropout=0.2, seed=7)
    train_task.run(other, train_p, val_p, str(tmp_path / "c"))
    pc = TabularPredictor.load(tmp_path / "c").predict(test)
    assert not np.array_equal(pa, pc)


def test_early_stopping_when_val_loss_rises(tmp_path: Path) -> None:
    # Validation labels follow the opposite rule: the better the fit, the worse val loss.
    train_p, val_p = write_splits(tmp_path, "binary", flip_val=True)
    spec = make_spec(tmp_path, epochs=30, patience=2, learning_rate=0.01)
    res = train_task.run(spec, train_p, val_p, str(tmp_path / "m"))
    assert res.stopped == "early_stopping"
    assert res.epochs_run < 30
    assert res.epochs_run == res.best_epoch + 2
    losses = [h["val_loss"] for h in res.history]
    assert res.val_loss == min(losses)


def test_on_epoch_callback_can_stop(tmp_path: Path) -> None:
    train_p, val_p = write_splits(tmp_path, "binary")
    seen: list[tuple[int, dict[str, float]]] = []

    def cb(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append((epoch, metrics))
        return epoch >= 2

    res = train_task.run(
        make_spec(tmp_path, epochs=10), train_p, val_p, str(tmp_path / "m"), on_epoch=cb
    )
    assert res.stopped == "callback" and res.epochs_run == 2
    assert [e for e, _ in seen] == [1, 2]
    assert {"train_loss", "val_loss", "roc_auc"} <= set(seen[0][1])


def test_tensorboard_events_written(tmp_path: Path) -> None:
    train_p, val_p = write_splits(tmp_path, "regression")
    tb = tmp_path / "tb"
    train_task.run(
        make_spec(tmp_path, epochs=2), train_p, val_p, str(tmp_path / "m"), tensorboard_dir=str(tb)
    )
    events = list(tb.glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb))
    acc.Reload()
    assert len(acc.Scalars("loss/val")) == 2
    assert "val/rmse" in acc.Tags()["scalars"]


def test_unseen_and_missing_category_at_predict_time(tmp_path: Path) -> None:
    train_p, val_p = write_splits(tmp_path, "binary")
    train_task.run(make_spec(tmp_path, epochs=1), train_p, val_p, str(tmp_path / "m"))
    pred = TabularPredictor.load(tmp_path / "m")
    df = pd.DataFrame(
        {
            "x1": [0.1, 0.2, 0.3],
            "x2": [1.0, 0.0, -1.0],
            "plan": ["enterprise", None, "pro"],
            "region": ["mars", "north", None],
        }
    )
    out = pred.predict(df)
    assert out.shape == (3, 2) and np.isfinite(out).all()
    with pytest.raises(DataError, match="plan"):
        pred.predict(df.drop(columns=["plan"]))


def test_encoder_roundtrip_and_codes(tmp_path: Path) -> None:
    df = make_frame(100, "binary")
    df.loc[0, "plan"] = None
    spec = make_spec(tmp_path)
    enc = Encoder.fit(df, spec)
    assert enc.numeric == ["x1", "x2"] and enc.categorical == ["plan", "region"]
    assert enc.vocab["plan"] == ["basic", "plus", "pro"]
    enc.save(tmp_path / "enc.json")
    enc2 = Encoder.load(tmp_path / "enc.json")
    x_num, x_cat = enc2.transform(df)
    assert x_num.dtype == np.float32 and x_cat.dtype == np.int64
    assert x_cat[0, 0] == 0  # missing -> unknown index
    assert set(x_cat[1:, 0]) <= {1, 2, 3}
    np.testing.assert_allclose(x_num.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x_num.std(axis=0), 1, atol=1e-4)
    assert list(enc2.encode_label(df)) == list((df["label"] == "yes").astype(int))
    bad = df.assign(label="maybe")
    with pytest.raises(DataError, match="training classes"):
        enc2.encode_label(bad)


def test_small_and_large_batches_encode_alike(tmp_path: Path) -> None:
    """Serving's per-row fast path must agree with the vectorized path used in training."""
    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "code": rng.choice([1.0, 2.0, 2.5, np.nan], size=n),  # float categorical
            "mixed": rng.choice(np.array(["a", 3, 3.0, None, "b"], dtype=object), size=n),
            "label": rng.integers(0, 2, size=n),
        }
    )
    spec = parse_spec(
        {"name": "t", "data": {"source": "x.csv", "label": "label", "categorical": ["code"]}}
    )
    enc = Encoder.fit(df.iloc[:400], spec)
    assert enc.vocab["code"] == ["1", "2", "2.5"] and enc.vocab["mixed"] == ["3", "a", "b"]
    test = pd.concat([df.iloc[400:], pd.DataFrame({"x1": [0.0], "code": [7.0], "mixed": ["zz"]})])
    _, big = enc.transform(test)
    small = np.concatenate([enc.transform(test.iloc[i : i + 10])[1] for i in range(0, 201, 10)])
    np.testing.assert_array_equal(big, small)
    assert big[-1].tolist() == [0, 0]  # unseen values


def test_tuned_params_shape_the_network(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    hp = resolve_params(spec, {"hidden_units": 32, "n_layers": 3, "learning_rate": 0.01})
    assert hp.hidden_units == [32, 32, 32] and hp.learning_rate == 0.01
    assert resolve_params(spec, {"n_layers": 2}).hidden_units == [16, 16]
    assert resolve_params(spec, {"hidden_units": 8}).hidden_units == [8]
    with pytest.raises(SpecError, match="unknown hyperparameter"):
        resolve_params(spec, {"momentum": 0.9})
    with pytest.raises(SpecError, match="dropout"):
        resolve_params(spec, {"dropout": 1.5})

    train_p, val_p = write_splits(tmp_path, "multiclass")
    res = train_task.run(
        spec,
        train_p,
        val_p,
        str(tmp_path / "m"),
        epochs=1,
        params={"hidden_units": 8, "n_layers": 2, "embedding_dim": 3},
    )
    assert res.epochs_run == 1 and res.params["hidden_units"] == [8, 8]
    pred = TabularPredictor.load(tmp_path / "m")
    assert pred.config.embedding_dims == [3, 3]
    assert pred.config.hidden_units == [8, 8]


def test_resume_continues_from_last_checkpoint(tmp_path: Path) -> None:
    train_p, val_p = write_splits(tmp_path, "binary")
    spec = make_spec(tmp_path, epochs=4, patience=10)
    full = train_task.run(spec, train_p, val_p, str(tmp_path / "full"))
    train_task.run(spec, train_p, val_p, str(tmp_path / "part"), epochs=2)
    resumed = train_task.run(spec, train_p, val_p, str(tmp_path / "part"), resume=True)
    assert resumed.epochs_run == 4
    assert [h["val_loss"] for h in resumed.history] == pytest.approx(
        [h["val_loss"] for h in full.history], rel=1e-6
    )


def test_bad_inputs(tmp_path: Path) -> None:
    train_p, val_p = write_splits(tmp_path, "binary")
    with pytest.raises(DataError, match="val_path"):
        train_task.run(
            make_spec(tmp_path), train_p, str(tmp_path / "nope.parquet"), str(tmp_path / "m")
        )
    # a validation class never seen in training is a data problem, named as such
    pd.read_parquet(val_p).assign(label="maybe").to_parquet(val_p)
    with pytest.raises(DataError, match="val_path"):
        train_task.run(make_spec(tmp_path), train_p, val_p, str(tmp_path / "m"))


def test_task_module_import_is_cheap() -> None:
    code = (
        "import sys, kubeloop.components.train.task, kubeloop.components.train.params; "
        "bad = {'torch', 'pandas', 'numpy', 'sklearn'} & set(sys.modules); "
        "assert not bad, bad"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow  # ~12 s: two torchrun workers each import torch
def test_ddp_gloo_two_processes_on_cpu(tmp_path: Path) -> None:
    """The DDP path end to end on CPU (gloo): 2 torchrun processes, rank 0 writes the model."""
    from kubeloop.components.train import distributed

    train_p, val_p = write_splits(tmp_path, "binary")
    spec = make_spec(tmp_path, epochs=2)
    res = distributed.launch(spec, train_p, val_p, str(tmp_path / "m"), nproc=2)
    assert res.world_size == 2 and res.epochs_run == 2
    out = TabularPredictor.load(tmp_path / "m").predict(make_frame(10, "binary", seed=9))
    assert out.shape == (10, 2)
    assert not (tmp_path / "m" / distributed.ARGS_FILE).exists()

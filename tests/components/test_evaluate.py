"""Evaluation: metrics, threshold on validation, gate (minimums, champion), report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from kubeloop.components.core.errors import KubeloopError, SpecError
from kubeloop.components.core.spec import parse_spec
from kubeloop.components.evaluate import metrics as M
from kubeloop.components.evaluate.task import EvalResult, GateResult, load_result, run
from kubeloop.components.register import registry

# ---------------------------------------------------------------- a fake model (Predictor)


class FakePredictor:
    """Linear score on numeric features; satisfies registry.Predictor."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.task = cfg["task"]
        self.classes = cfg["classes"]
        self.features = cfg["features"]
        self.coef: dict[str, float] = cfg["coef"]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        z = sum(w * df[c].to_numpy(dtype=float) for c, w in self.coef.items())
        if self.task == "regression":
            return np.asarray(z, dtype=float)
        p = 1 / (1 + np.exp(-z))
        return np.c_[1 - p, p]


def fake_model_dir(
    path: Path, coef: dict[str, float], task: str = "binary", features: list[str] | None = None
) -> str:
    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "task": task,
        "classes": [0, 1] if task == "binary" else [],
        "features": features or ["x", "noise", "c"],
        "coef": coef,
    }
    (path / "fake.json").write_text(json.dumps(cfg))
    (path / "checkpoints").mkdir(exist_ok=True)
    (path / "checkpoints" / "epoch1.pt").write_text("big")
    return str(path)


def fake_loader(model_dir: str) -> FakePredictor:
    return FakePredictor(json.loads((Path(model_dir) / "fake.json").read_text()))


def identity_loader(_clean_params_path: str) -> Any:
    return lambda df: df


def frame(n: int, seed: int, task: str = "binary") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    noise = rng.normal(size=n)
    signal = x + 0.7 * rng.normal(size=n)
    y = (signal > 0).astype(int) if task == "binary" else 3 * x + rng.normal(size=n)
    return pd.DataFrame(
        {
            "row_id": np.arange(n),
            "ingested_at": pd.Timestamp("2024-01-01"),
            "x": x,
            "noise": noise,
            "c": np.where(np.arange(n) % 10 == 0, "rare", np.where(x > 0, "hi", "lo")),
            "y": y,
        }
    )


def make_spec(tmp_path: Path, **evaluate: Any) -> Any:
    return parse_spec(
        {
            "name": "churn",
            "workdir": str(tmp_path / "wd"),
            "data": {"source": str(tmp_path / "raw.csv"), "label": "y"},
            "evaluate": evaluate,
        }
    )


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return home


def write_frames(tmp_path: Path, task: str = "binary") -> tuple[str, str]:
    val, test = tmp_path / "val.parquet", tmp_path / "test.parquet"
    frame(300, 1, task).to_parquet(val)
    frame(400, 2, task).to_parquet(test)
    return str(val), str(test)


def evaluate(tmp_path: Path, spec: Any, model_dir: str, task: str = "binary") -> EvalResult:
    val, test = write_frames(tmp_path, task)
    return run(
        spec,
        model_dir,
        val,
        test,
        str(tmp_path / "out" / "report.html"),
        str(tmp_path / "out" / "metrics.json"),
        predictor_loader=fake_loader,
        preprocess_loader=identity_loader,
    )


def register_champion(
    tmp_path: Path,
    spec: Any,
    coef: dict[str, float],
    value: float,
    features: list[str] | None = None,
) -> str:
    model_dir = fake_model_dir(tmp_path / "champ_model", coef, features=features)
    (tmp_path / "clean.json").write_text("{}")
    result = EvalResult(
        task="binary",
        metrics={"roc_auc": value},
        primary_metric="roc_auc",
        primary_value=value,
        higher_is_better=True,
        threshold=0.5,
        classes=[0, 1],
        gate=GateResult(passed=True, reasons=[], candidate_value=value),
    )
    return registry.register(
        spec,
        model_dir=model_dir,
        clean_params_path=str(tmp_path / "clean.json"),
        eval_result=result,
        data_fingerprint="fp",
        run_id="r0",
        reference_stats={},
    )


# ---------------------------------------------------------------- metrics


def test_binary_metrics_hand_checked() -> None:
    y = np.array([1, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.3, 0.6])
    proba = np.c_[1 - p, p]
    m = M.classification_metrics(y, proba, "binary", threshold=0.5, calibration_bins=5)
    # predictions at 0.5: [1, 1, 0, 1] -> TP 2, FP 1, FN 0, TN 1
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)
    assert m["roc_auc"] == pytest.approx(0.75)  # pairs (pos, neg): 3 of 4 ranked right
    assert m["brier"] == pytest.approx((0.01 + 0.64 + 0.09 + 0.16) / 4)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    # ECE, 5 bins, top-class confidence [0.9, 0.8, 0.7, 0.6], correct [1, 0, 1, 1]:
    # (0.4,0.6]: |1 - 0.6| * 1/4; (0.6,0.8]: |0.5 - 0.75| * 2/4; (0.8,1]: |1 - 0.9| * 1/4
    assert m["ece"] == pytest.approx(0.1 + 0.125 + 0.025)
    # Higher threshold changes threshold metrics only.
    m2 = M.classification_metrics(y, proba, "binary", threshold=0.85)
    assert m2["recall"] == pytest.approx(0.5) and m2["roc_auc"] == m["roc_auc"]


def test_multiclass_metrics_are_macro() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    proba = rng.dirichlet([1, 1, 1], size=90)
    proba[np.arange(90), y] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    m = M.classification_metrics(y, proba, "multiclass")
    y_hat = proba.argmax(axis=1)
    assert m["f1"] == pytest.approx(skm.f1_score(y, y_hat, average="macro"))
    assert m["precision"] == pytest.approx(skm.precision_score(y, y_hat, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert "brier" not in m
    notes: list[str] = []
    m_missing = M.classification_metrics(y[:60], proba[:60], "multiclass", notes=notes)
    assert "roc_auc" not in m_missing and "absent" in notes[0]


def test_regression_metrics() -> None:
    y, pred = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 4.0])
    m = M.regression_metrics(y, pred)
    assert m["mae"] == pytest.approx(0.375)
    assert m["rmse"] == pytest.approx(np.sqrt((0.25 + 1.0) / 4))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert not M.higher_is_better("rmse") and M.higher_is_better("r2")


def test_threshold_methods() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.35, 0.8, 0.3, 0.9])
    assert M.choose_threshold(y, p, "f1")[0] == pytest.approx(0.35)
    assert M.choose_threshold(y, p, "youden")[0] == pytest.approx(0.35)
    assert M.choose_threshold(y, p, "fixed", 0.42)[0] == 0.42
    t, note = M.choose_threshold(np.zeros(4, int), p[:4], "f1", 0.5)
    assert t == 0.5 and note and "single class" in note


def test_slice_metrics_skips_small_and_single_class_slices() -> None:
    df = frame(400, 3)
    y = df["y"].to_numpy()
    p = 1 / (1 + np.exp(-df["x"].to_numpy()))
    rows = {r["value"]: r for r in M.slice_metrics(df, y, np.c_[1 - p, p], "c")}
    assert set(rows) == {"hi", "lo", "rare"}
    assert rows["rare"]["n"] == 40 and "roc_auc" in rows["rare"]
    small = M.slice_metrics(df.iloc[:30], y[:30], np.c_[1 - p, p][:30], "c")
    assert all("rows" in r["skipped"] for r in small if r["n"] < 20)
    one_class = df.assign(y=1)
    rows1 = M.slice_metrics(one_class, one_class["y"].to_numpy(), np.c_[1 - p, p], "c")
    assert all(r.get("skipped") == "a single class in this slice" for r in rows1)
    with pytest.raises(SpecError, match="slice_by"):
        M.slice_metrics(df, y, np.c_[1 - p, p], "nope")


def test_encode_labels_rejects_unseen_class() -> None:
    assert M.encode_labels(pd.Series(["no", "yes"]), ["no", "yes"]).tolist() == [0, 1]
    assert M.encode_labels(pd.Series(["1", "0"]), [0, 1]).tolist() == [1, 0]
    with pytest.raises(Exception, match="not seen in training"):
        M.encode_labels(pd.Series(["maybe"]), ["no", "yes"])


# ---------------------------------------------------------------- run + gate


def test_run_threshold_from_validation_and_report(tmp_path: Path, store: Path) -> None:
    spec = make_spec(tmp_path, slice_by=["c"], minimums={"roc_auc": 0.7})
    model = fake_model_dir(tmp_path / "m", {"x": 3.0})
    result = evaluate(tmp_path, spec, model)
    val = pd.read_parquet(tmp_path / "val.parquet")
    test = pd.read_parquet(tmp_path / "test.parquet")
    expected, _ = M.choose_threshold(
        val["y"].to_numpy(), fake_loader(model).predict(val)[:, 1], "f1"
    )
    on_test, _ = M.choose_threshold(
        test["y"].to_numpy(), fake_loader(model).predict(test)[:, 1], "f1"
    )
    assert result.threshold == pytest.approx(expected) and expected != on_test
    assert result.gate.passed, result.gate.reasons
    assert any(r.startswith("roc_auc") and ">= minimum 0.700" in r for r in result.gate.reasons)
    assert "no champion" in result.gate.reasons[-1]
    assert result.primary_metric == "roc_auc" and result.higher_is_better
    assert {s["value"] for s in result.slices["c"]} == {"hi", "lo", "rare"}
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "PASSED" in html
    assert "PASSED" in (tmp_path / "out" / "report.md").read_text()
    assert load_result(str(tmp_path / "out" / "metrics.json")) == result


def test_gate_fails_on_minimum_and_maximum(tmp_path: Path, store: Path) -> None:
    spec = make_spec(tmp_path, minimums={"roc_auc": 0.99}, maximums={"ece": 0.5})
    result = evaluate(tmp_path, spec, fake_model_dir(tmp_path / "m", {"x": 3.0}))
    assert not result.gate.passed
    assert any(
        r.startswith("FAILED: roc_auc") and "< minimum 0.990" in r for r in result.gate.reasons
    )
    assert any(r.startswith("ece") and "<= maximum" in r for r in result.gate.reasons)


def test_unknown_metric_in_minimums_is_a_spec_error(tmp_path: Path, store: Path) -> None:
    spec = make_spec(tmp_path, minimums={"auc": 0.7})
    with pytest.raises(SpecError, match=r"evaluate.minimums.*'auc'.*available: accuracy"):
        evaluate(tmp_path, spec, fake_model_dir(tmp_path / "m", {"x": 3.0}))
    with pytest.raises(SpecError, match=r"evaluate\.metric"):
        evaluate(
            tmp_path, make_spec(tmp_path, metric="rmse"), fake_model_dir(tmp_path / "m", {"x": 3.0})
        )


def test_gate_fails_against_a_better_champion(tmp_path: Path, store: Path) -> None:
    spec = make_spec(tmp_path)
    champ = register_champion(tmp_path, spec, {"x": 3.0}, 0.9)
    weak = fake_model_dir(tmp_path / "weak", {"x": 0.5, "noise": 0.8})
    result = evaluate(tmp_path, spec, weak)
    assert not result.gate.passed
    assert result.gate.champion_tag == champ
    assert result.gate.champion_value is not None
    assert result.gate.champion_value > result.gate.candidate_value
    assert any(
        r.startswith("FAILED: candidate roc_auc") and "does not beat champion" in r
        for r in result.gate.reasons
    )


def test_gate_passes_with_margin_and_fails_with_a_larger_one(tmp_path: Path, store: Path) -> None:
    register_champion(tmp_path, make_spec(tmp_path), {"x": 0.5, "noise": 0.8}, 0.7)
    good = fake_model_dir(tmp_path / "good", {"x": 3.0})
    result = evaluate(tmp_path, make_spec(tmp_path, champion_margin=0.01), good)
    assert result.gate.passed, result.gate.reasons
    gain = result.gate.candidate_value - (result.gate.champion_value or 0)
    assert gain > 0.01
    assert f"by {gain:.3f}; needed >= margin 0.01" in result.gate.reasons[-1]
    strict = evaluate(tmp_path, make_spec(tmp_path, champion_margin=gain + 0.01), good)
    assert not strict.gate.passed


def test_champion_that_cannot_score_is_not_compared(tmp_path: Path, store: Path) -> None:
    spec = make_spec(tmp_path)
    register_champion(tmp_path, spec, {"x": 3.0}, 0.99, features=["x", "old_feature"])
    result = evaluate(tmp_path, spec, fake_model_dir(tmp_path / "m", {"x": 1.0}))
    assert result.gate.passed
    assert result.gate.champion_value is None
    assert "cannot score these rows: missing ['old_feature']" in result.gate.reasons[-1]


def test_regression_run(tmp_path: Path, store: Path) -> None:
    spec = make_spec(tmp_path, maximums={"rmse": 0.5})
    result = evaluate(
        tmp_path, spec, fake_model_dir(tmp_path / "m", {"x": 3.0}, "regression"), task="regression"
    )
    assert result.task == "regression" and result.threshold is None
    assert result.primary_metric == "rmse" and not result.higher_is_better
    assert not result.gate.passed  # the label noise has sd 1
    assert any("FAILED: rmse" in r and "> maximum 0.500" in r for r in result.gate.reasons)
    assert (tmp_path / "out" / "report.html").read_text().count("base64,") == 2


def test_champion_scores_the_raw_rows_through_its_own_preprocessing(
    tmp_path: Path, store: Path
) -> None:
    """The candidate sees this run's cleaned frames; the champion the same rows before
    cleaning, through its registered preprocessing (here: one that records its input)."""
    spec = make_spec(tmp_path)
    register_champion(tmp_path, spec, {"x": 0.5}, 0.7)
    val, test = write_frames(tmp_path)
    raw_val, raw_test = tmp_path / "raw_val.parquet", tmp_path / "raw_test.parquet"
    for src, dst in ((val, raw_val), (test, raw_test)):
        df = pd.read_parquet(src)
        df["x"] = df["x"] * 10  # "uncleaned": distinguishable from the cleaned frame
        df.to_parquet(dst)
    seen: list[pd.DataFrame] = []

    def recording_loader(_clean_params_path: str) -> Any:
        return lambda df: seen.append(df.copy()) or df

    def evaluate_with_raw(raw_test_path: Path) -> EvalResult:
        return run(
            spec,
            fake_model_dir(tmp_path / "cand", {"x": 3.0}),
            val,
            test,
            str(tmp_path / "out" / "report.html"),
            str(tmp_path / "out" / "metrics.json"),
            predictor_loader=fake_loader,
            preprocess_loader=recording_loader,
            raw_val_path=str(raw_val),
            raw_test_path=str(raw_test_path),
        )

    evaluate_with_raw(raw_test)
    assert seen, "the champion's preprocessing was not used"
    raw_x = set(pd.read_parquet(raw_test)["x"]) | set(pd.read_parquet(raw_val)["x"])
    assert all(set(df["x"]) <= raw_x for df in seen)

    short = tmp_path / "short.parquet"
    pd.read_parquet(raw_test).iloc[:5].to_parquet(short)
    with pytest.raises(KubeloopError, match="differ in length"):
        evaluate_with_raw(short)

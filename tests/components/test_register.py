"""Model registry (BentoML store), stages, champion, atomic registration, reference stats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import parse_spec
from kubeloop.components.core.stats import (
    histogram_counts,
    label_stats,
    reference_stats,
)
from kubeloop.components.evaluate.task import EvalResult, GateResult
from kubeloop.components.register import registry
from kubeloop.components.register import task as register_task


class FakePredictor:
    def __init__(self) -> None:
        self.task = "binary"
        self.classes = ["no", "yes"]
        self.features = ["x"]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-df["x"].to_numpy(dtype=float)))
        return np.c_[1 - p, p]


def fake_predictor_loader(model_dir: str) -> FakePredictor:
    assert (Path(model_dir) / "model.pt").is_file()
    return FakePredictor()


def clip_preprocess_loader(path: str) -> Any:
    cap = json.loads(Path(path).read_text())["cap"]
    return lambda df: df.assign(x=df["x"].clip(upper=cap))


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(h))
    return h


@pytest.fixture()
def spec(tmp_path: Path) -> Any:
    return parse_spec(
        {
            "name": "churn",
            "workdir": str(tmp_path / "wd"),
            "data": {"source": "raw.csv", "label": "y", "entity": "id"},
        }
    )


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    model_dir = tmp_path / "model"
    (model_dir / "checkpoints").mkdir(parents=True)
    (model_dir / "tensorboard").mkdir()
    (model_dir / "model.pt").write_text("weights")
    (model_dir / "model_config.json").write_text("{}")
    (model_dir / "checkpoints" / "last.pt").write_text("big")
    clean = tmp_path / "clean_params.json"
    clean.write_text(json.dumps({"cap": 1.0}))
    report = tmp_path / "report.html"
    report.write_text("<html>report</html>")
    return {"model_dir": str(model_dir), "clean": str(clean), "report": str(report)}


def result(passed: bool = True, value: float = 0.8) -> EvalResult:
    return EvalResult(
        task="binary",
        metrics={"roc_auc": value, "accuracy": 0.7},
        primary_metric="roc_auc",
        primary_value=value,
        higher_is_better=True,
        threshold=0.42,
        classes=["no", "yes"],
        slices={"plan": [{"value": "basic", "n": 5, "skipped": "only 5 rows (< 20)"}]},
        gate=GateResult(
            passed=passed,
            reasons=["roc_auc 0.800 >= minimum 0.700"] if passed else ["FAILED: roc_auc low"],
            candidate_value=value,
        ),
        n_val=100,
        n_test=120,
    )


def register(spec: Any, files: dict[str, str], **kw: Any) -> str:
    args: dict[str, Any] = {
        "model_dir": files["model_dir"],
        "clean_params_path": files["clean"],
        "eval_result": result(),
        "data_fingerprint": "abc123",
        "run_id": "run-1",
        "reference_stats": {"n_rows": 3, "features": {"x": {"kind": "numeric"}}},
        "report_html": files["report"],
    }
    return registry.register(spec, **{**args, **kw})


def store_listing(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in (home / "models").rglob("*"))


def test_register_writes_files_labels_and_metadata(home: Path, spec: Any, files: Any) -> None:
    tag = register(spec, files)
    info = registry.get(tag)
    assert info.name == "churn" and tag == f"churn:{info.version}"
    assert info.stage == "candidate"
    assert info.labels == {"stage": "candidate", "project": "churn", "task": "binary"}
    md = info.metadata
    assert md["primary_metric"] == "roc_auc" and md["threshold"] == 0.42
    assert md["data_fingerprint"] == "abc123" and md["run_id"] == "run-1"
    assert md["spec_hash"] == spec.spec_hash() and md["feature_service"] == "churn_v1"
    assert md["label"] == "y" and md["classes"] == ["no", "yes"] and md["features"] == ["x"]
    assert info.metrics == {"roc_auc": 0.8, "accuracy": 0.7} and info.primary_value == 0.8
    root = Path(info.path)
    assert str(root).startswith(str(home / "models"))
    for name in (
        "clean_params.json",
        "reference_stats.json",
        "metrics.json",
        "model_card.md",
        "report.html",
        "model/model.pt",
        "model/model_config.json",
    ):
        assert (root / name).is_file(), name
    assert not (root / "model" / "checkpoints").exists()
    assert not (root / "model" / "tensorboard").exists()
    card = (root / "model_card.md").read_text()
    assert f"# Model card: {tag}" in card and "abc123" in card
    assert "slice `plan` = `basic` not evaluated: only 5 rows" in card
    assert f'registry.load("{tag}")' in card
    assert EvalResult.model_validate_json((root / "metrics.json").read_text()) == result()


def test_refuses_to_register_when_gate_failed(home: Path, spec: Any, files: Any) -> None:
    with pytest.raises(KubeloopError, match="gate failed: FAILED: roc_auc low"):
        register(spec, files, eval_result=result(passed=False))
    assert registry.list_models() == []


def test_failure_inside_registration_leaves_nothing(
    home: Path, spec: Any, files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bentoml
    from bentoml._internal.models.model import ModelStore

    first = register(spec, files)
    before = store_listing(home)
    with pytest.raises(KubeloopError, match="nothing was saved"):
        register(spec, files, clean_params_path=files["clean"] + ".missing")
    # A failure after most files were written (the model card comes last).
    from kubeloop.components.register import card

    def boom(*_a: Any, **_k: Any) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(card, "render_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        register(spec, files)
    assert store_listing(home) == before
    assert [str(m.tag) for m in bentoml.models.list(_model_store=ModelStore(home / "models"))] == [
        first
    ]
    assert [m.tag for m in registry.list_models()] == [first]


MODEL_FILES = (
    "model.yaml",
    "clean_params.json",
    "reference_stats.json",
    "metrics.json",
    "model_card.md",
    "report.html",
    "model/model.pt",
    "model/model_config.json",
)


def version_dirs(home: Path) -> list[str]:
    d = home / "models" / "churn"
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def test_failure_before_the_move_leaves_the_store_unchanged(
    home: Path, spec: Any, files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BentoML has written every file (into staging); the move into the store fails."""
    first = register(spec, files)
    before = store_listing(home)
    seen: list[Path] = []

    def failing_rename(src: Any, dst: Any) -> None:
        seen.append(Path(src))
        assert all((Path(src) / f).is_file() for f in MODEL_FILES)  # the files were written
        raise OSError("killed before the move")

    monkeypatch.setattr(registry.os, "rename", failing_rename)
    with pytest.raises(KubeloopError, match="nothing was saved"):
        register(spec, files)
    assert len(seen) == 1
    assert [m.tag for m in registry.list_models()] == [first]
    assert version_dirs(home) == [first.split(":")[1]]
    assert store_listing(home) == before
    assert registry.get("churn:latest").tag == first
    assert list((home / registry.STAGING_DIR).iterdir()) == []  # staging removed


def test_model_appears_complete_in_one_rename(
    home: Path, spec: Any, files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import bentoml
    from bentoml._internal.models.model import ModelStore

    first = register(spec, files)
    real_rename = os.rename
    moves: list[tuple[Path, Path]] = []

    def checked_rename(src: Any, dst: Any) -> None:
        src, dst = Path(src), Path(dst)
        # Until the rename, readers of the store see only the old model ...
        assert [m.tag for m in registry.list_models()] == [first]
        assert registry.champion("churn") is not None
        assert registry.champion("churn").tag == first  # type: ignore[union-attr]
        assert not dst.exists() and dst.parent == home / "models" / "churn"
        # ... and what is moved in is already complete.
        assert all((src / f).is_file() for f in MODEL_FILES)
        moves.append((src, dst))
        real_rename(src, dst)

    monkeypatch.setattr(registry.os, "rename", checked_rename)
    second = register(spec, files)
    assert len(moves) == 1 and moves[0][1].name == second.split(":")[1]
    assert [m.tag for m in registry.list_models()] == [second, first]
    assert registry.get(second).tag == second
    assert registry.get("churn:latest").tag == second and registry.get("churn").tag == second
    assert (home / "models" / "churn" / "latest").read_text() == second.split(":")[1]
    store = ModelStore(home / "models")
    assert str(bentoml.models.get(second, _model_store=store).tag) == second
    assert str(bentoml.models.get("churn:latest", _model_store=store).tag) == second
    assert list((home / registry.STAGING_DIR).iterdir()) == []


def test_list_get_and_stages(home: Path, spec: Any, files: Any) -> None:
    a = register(spec, files)
    b = register(spec, files, eval_result=result(value=0.9))
    assert [m.tag for m in registry.list_models()] == [b, a]  # newest first
    assert [m.tag for m in registry.list_models("churn")] == [b, a]
    assert registry.list_models("other") == []
    assert registry.get("churn:latest").tag == b and registry.get("churn").tag == b
    assert registry.get(a[: len("churn:") + 10]).tag == a  # unique version prefix
    with pytest.raises(KubeloopError, match="kubeloop models list"):
        registry.get("churn:doesnotexist")
    with pytest.raises(KubeloopError, match="unknown stage 'prod'"):
        registry.set_stage(a, "prod")

    assert registry.set_stage(a, "production").stage == "production"
    assert registry.get("churn:production").tag == a
    assert [m.tag for m in registry.by_stage("churn", "candidate")] == [b]
    # Promoting b moves a to previous (the rollback target).
    registry.set_stage(b, "production")
    assert registry.get(a).stage == "previous" and registry.get(b).stage == "production"
    c = register(spec, files)
    registry.set_stage(c, "production")
    assert [registry.get(t).stage for t in (a, b, c)] == ["archived", "previous", "production"]
    # Labels keep the stage at registration; the index is what counts.
    assert registry.get(c).labels["stage"] == "candidate"
    stages = json.loads((home / registry.STAGES_FILE).read_text())
    assert stages[c] == "production"
    with pytest.raises(KubeloopError, match="no model 'churn' in stage 'failed'"):
        registry.get("churn:failed")


def test_champion_prefers_production_over_newer_candidate(
    home: Path, spec: Any, files: Any
) -> None:
    assert registry.champion("churn") is None
    a = register(spec, files)
    b = register(spec, files)
    champ = registry.champion("churn")
    assert champ is not None and champ.tag == b  # newest candidate
    registry.set_stage(a, "production")
    register(spec, files)  # an even newer candidate
    champ = registry.champion("churn")
    assert champ is not None and champ.tag == a
    registry.set_stage(a, "archived")
    registry.set_stage(b, "failed")
    champ = registry.champion("churn")
    assert champ is not None and champ.stage == "candidate" and champ.tag not in (a, b)


def test_load_applies_cleaning_then_predictor(home: Path, spec: Any, files: Any) -> None:
    tag = register(spec, files, reference_stats={"n_rows": 1, "features": {"x": {}}})
    model = registry.load(
        tag, predictor_loader=fake_predictor_loader, preprocess_loader=clip_preprocess_loader
    )
    assert model.info.tag == tag and model.threshold == 0.42 and model.classes == ["no", "yes"]
    assert model.reference_stats == {"n_rows": 1, "features": {"x": {}}}
    out = model.predict(pd.DataFrame({"x": [0.0, 5.0]}))
    assert out.shape == (2, 2)
    assert out[1, 1] == pytest.approx(1 / (1 + np.exp(-1.0)))  # 5.0 capped at 1.0 first
    with pytest.raises(KubeloopError, match=r"lacks feature column\(s\) \['x'\]"):
        model.predict(pd.DataFrame({"z": [1.0]}))


def test_store_location_follows_bentoml_home_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: Any, files: Any
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "one"))
    tag = register(spec, files)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "two"))
    assert registry.list_models() == []
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "one"))
    assert [m.tag for m in registry.list_models()] == [tag]


# ---------------------------------------------------------------- reference stats


def test_reference_stats_shape() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "age": np.r_[rng.normal(40, 10, 999), np.nan],
            "plan": ["basic"] * 600 + ["pro"] * 300 + [f"p{i}" for i in range(100)],
            "empty": np.nan,
        }
    )
    stats = reference_stats(df, {"age": "numeric", "plan": "categorical", "empty": "numeric"})
    json.dumps(stats)  # JSON-serializable
    assert stats["n_rows"] == 1000
    age = stats["features"]["age"]
    assert age["count"] == 999 and age["null_fraction"] == pytest.approx(0.001)
    assert age["min"] <= age["quantiles"]["0.5"] <= age["max"]
    assert list(age["quantiles"]) == [
        "0.0",
        "0.01",
        "0.05",
        "0.1",
        "0.25",
        "0.5",
        "0.75",
        "0.9",
        "0.95",
        "0.99",
        "1.0",
    ]
    edges, counts = age["histogram"]["edges"], age["histogram"]["counts"]
    assert len(edges) == 11 and len(counts) == 10 and sum(counts) == 999
    assert all(90 <= c <= 110 for c in counts)  # decile edges: ~10% per bin
    # New data outside the train range lands in the outer bins.
    assert histogram_counts([-1e9, 1e9, 40.0], edges)[0] == 1
    assert histogram_counts([-1e9, 1e9, 40.0], edges)[-1] == 1
    plan = stats["features"]["plan"]
    assert plan["n_unique"] == 102
    assert plan["frequencies"]["basic"] == pytest.approx(0.6)
    assert len(plan["frequencies"]) == 101 and plan["frequencies"]["__other__"] > 0
    assert sum(plan["frequencies"].values()) == pytest.approx(1.0)
    assert stats["features"]["empty"]["null_fraction"] == 1.0
    assert stats["features"]["empty"]["histogram"] == {"edges": [], "counts": []}
    rates = label_stats(pd.Series(["no", "yes", "no", "no"]), "binary")["class_rates"]
    assert rates == {"no": 0.75, "yes": 0.25}
    reg = label_stats(pd.Series(np.arange(100.0)), "regression")
    assert reg["quantiles"]["0.5"] == pytest.approx(49.5)


# ---------------------------------------------------------------- the register task


def test_register_task(tmp_path: Path, home: Path, spec: Any, files: Any) -> None:
    train = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "ingested_at": pd.Timestamp("2024-01-01"),
            "x": [0.1, 0.2, None],
            "plan": ["a", "b", "a"],
            "y": ["no", "yes", "no"],
        }
    )
    train_path = tmp_path / "train.parquet"
    train.to_parquet(train_path)
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(result().model_dump_json())
    tag = register_task.run(
        spec,
        files["model_dir"],
        files["clean"],
        str(eval_json),
        str(train_path),
        "fp1",
        "run-9",
        files["report"],
        predictor_loader=fake_predictor_loader,
    )
    assert tag is not None
    info = registry.get(tag)
    stats = json.loads(info.file("reference_stats.json").read_text())
    assert set(stats["features"]) == {"x", "plan"}
    assert stats["features"]["x"]["null_fraction"] == pytest.approx(1 / 3)
    assert stats["label"]["class_rates"] == pytest.approx({"no": 2 / 3, "yes": 1 / 3})
    assert info.metadata["features"] == ["x", "plan"]
    assert "train 3" in info.file("model_card.md").read_text()

    eval_json.write_text(result(passed=False).model_dump_json())
    assert (
        register_task.run(
            spec,
            files["model_dir"],
            files["clean"],
            str(eval_json),
            str(train_path),
            "fp1",
            "run-10",
            files["report"],
        )
        is None
    )
    assert len(registry.list_models()) == 1


# ---------------------------------------------------------------- with the real model


@pytest.mark.slow
def test_real_model_evaluate_register_load(tmp_path: Path, home: Path) -> None:
    """Train a tiny real TabularPredictor, evaluate, register, and score raw (dirty) rows."""
    from kubeloop.components.clean.task import apply, fit
    from kubeloop.components.evaluate.task import run as evaluate_run
    from kubeloop.components.train.task import run as train_run

    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=n)
    raw = pd.DataFrame(
        {
            "id": np.arange(n),
            "ingested_at": pd.Timestamp("2024-01-01"),
            "x": x,
            "plan": rng.choice(["basic", "pro"], size=n),
            "y": np.where(x + 0.5 * rng.normal(size=n) > 0, "yes", "no"),
        }
    )
    spec = parse_spec(
        {
            "name": "churn",
            "workdir": str(tmp_path / "wd"),
            "data": {"source": "raw.csv", "label": "y", "entity": "id"},
            "train": {
                "epochs": 2,
                "learning_rate": 0.05,
                "hidden_units": [8],
                "batch_size": 64,
                "device": "cpu",
            },
            "evaluate": {"minimums": {"roc_auc": 0.6}, "slice_by": ["plan"]},
        }
    )
    parts = {"train": raw.iloc[:400], "val": raw.iloc[400:500], "test": raw.iloc[500:]}
    params = fit(parts["train"], spec)
    paths = {}
    for name, df in parts.items():
        paths[name] = str(tmp_path / f"{name}.parquet")
        apply(df, params)[0].to_parquet(paths[name])
    clean_path = tmp_path / "clean_params.json"
    clean_path.write_text(params.model_dump_json())
    model_dir = str(tmp_path / "model")
    train_run(spec, paths["train"], paths["val"], model_dir)

    result = evaluate_run(
        spec,
        model_dir,
        paths["val"],
        paths["test"],
        str(tmp_path / "report.html"),
        str(tmp_path / "eval.json"),
    )
    assert result.gate.passed, result.gate.reasons
    assert result.classes == ["no", "yes"] and result.metrics["roc_auc"] > 0.8
    eval_json = str(tmp_path / "eval.json")
    tag = register_task.run(
        spec,
        model_dir,
        str(clean_path),
        eval_json,
        paths["train"],
        "fp",
        "run-1",
        str(tmp_path / "report.html"),
    )
    assert tag is not None
    model = registry.load(tag)
    dirty = raw.iloc[500:510].copy()
    dirty.loc[dirty.index[:3], "x"] = np.nan  # imputed by the registered clean params
    proba = model.predict(dirty)
    assert proba.shape == (10, 2) and np.allclose(proba.sum(axis=1), 1.0)
    # A second candidate is compared with the first (the champion) on the same rows.
    again = evaluate_run(
        spec,
        model_dir,
        paths["val"],
        paths["test"],
        str(tmp_path / "report2.html"),
        str(tmp_path / "eval2.json"),
    )
    assert again.gate.champion_tag == tag
    assert again.gate.champion_value == pytest.approx(result.primary_value)
    assert not again.gate.passed  # the same model ties: a tie never beats the champion
    assert "a tie does not pass" in again.gate.reasons[-1]


def test_load_audit_flattens_ingest_and_clean_counts(tmp_path: Path) -> None:
    from kubeloop.components.register.task import load_audit

    (tmp_path / "ingest.json").write_text(
        json.dumps({"rows_in": 10, "duplicate_rows": 2, "missing_label": 0, "rows_out": 8})
    )
    (tmp_path / "clean.json").write_text(
        json.dumps({"train": {"capped": 3}, "test": {"capped": 1}})
    )
    audit = load_audit(str(tmp_path / "ingest.json"), str(tmp_path / "clean.json"))
    assert audit == {
        "ingest: duplicate_rows": 2,
        "ingest: missing_label": 0,
        "clean train: capped": 3,
        "clean test: capped": 1,
    }
    assert load_audit(None, str(tmp_path / "missing.json")) == {}

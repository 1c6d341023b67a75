"""The reference sample stored with a registered model, and a detector built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.stats import PREDICTION_COLUMN, SCORE_COLUMN, reference_sample
from kubeloop.components.register import registry
from kubeloop.serving.drift import DriftDetector, DriftSettings
from kubeloop.serving.schemas import Prediction
from tests import tiny_model

pytestmark = pytest.mark.xdist_group("drift_tiny_model")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("drift_model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        tag = tiny_model.train_and_register(tmp)
        yield registry.load(tag), tmp


def served(model: registry.RegisteredModel, rows: list[dict[str, Any]]) -> list[Prediction]:
    proba = model.predict(pd.DataFrame(rows))
    threshold = model.threshold if model.threshold is not None else 0.5
    return [
        Prediction(
            prediction=model.classes[int(p[1] >= threshold)],
            probabilities={str(c): float(v) for c, v in zip(model.classes, p, strict=True)},
            model=model.info.tag,
        )
        for p in proba
    ]


def test_registered_model_stores_features_and_its_predictions(model: Any) -> None:
    m, tmp = model
    path = m.reference_sample_path
    assert path is not None and path.name == "reference_sample.parquet"
    sample = m.reference_sample()
    assert list(sample.columns) == ["x", "plan", PREDICTION_COLUMN, SCORE_COLUMN]
    train = pd.read_parquet(tmp / "train.parquet")
    assert len(sample) == len(train) == 400  # fewer rows than the cap: all of them
    pd.testing.assert_frame_equal(
        sample[["x", "plan"]], reference_sample(train, ["x", "plan"], seed=0)
    )
    # the stored predictions are the model's own on those rows
    proba = m.predictor.predict(sample[["x", "plan"]])
    np.testing.assert_allclose(sample[SCORE_COLUMN].to_numpy(), proba[:, 1])
    assert set(sample[PREDICTION_COLUMN]) <= {"no", "yes"}
    assert (sample[PREDICTION_COLUMN] == "yes").equals(pd.Series(proba[:, 1] >= m.threshold))


def test_reference_sample_is_seeded_and_capped() -> None:
    df = pd.DataFrame({"a": np.arange(10_000), "b": np.arange(10_000) % 7})
    one = reference_sample(df, ["a"], seed=3)
    assert len(one) == 5000 and list(one.columns) == ["a"]
    assert one.equals(reference_sample(df, ["a"], seed=3))
    assert not one.equals(reference_sample(df, ["a"], seed=4))
    assert one["a"].is_monotonic_increasing  # kept in the frame's order


def test_detector_from_a_registered_model_checks_served_traffic(model: Any) -> None:
    m, _ = model
    settings = DriftSettings(window=300, min_rows=100, draws=500)
    det = DriftDetector.from_model(m, settings)
    assert det.features == ["x", "plan"] and det.positive_class == "yes"

    rows = tiny_model.rows(300, seed=11)[["x", "plan"]].to_dict("records")
    report = det.check(rows, served(m, rows))
    assert report.status == "ok", report.message
    assert [c.column for c in report.prediction] == [PREDICTION_COLUMN, SCORE_COLUMN]

    shifted = tiny_model.rows(300, seed=12).assign(x=lambda d: d["x"] + 1.0)
    rows = shifted[["x", "plan"]].to_dict("records")
    report = det.check(rows, served(m, rows))
    assert report.drifted and "x" in report.drifted_columns
    assert report.prediction_drifted  # the model says "yes" far more often


def test_a_model_without_a_reference_sample_is_refused(model: Any, tmp_path: Path) -> None:
    m, _ = model
    bare = registry.RegisteredModel(
        m.info.model_copy(update={"path": str(tmp_path)}),
        m.predictor,
        m.preprocess,
        m.reference_stats,
    )
    with pytest.raises(KubeloopError, match=r"no reference_sample\.parquet"):
        DriftDetector.from_model(bare)

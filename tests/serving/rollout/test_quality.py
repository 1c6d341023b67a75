"""live_quality_delta's statistics: the value is the upper confidence bound of the canary's
quality difference, so noise in a few hundred labels does not roll back a good model while
a clearly worse canary still fails."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kubeloop.serving.rollout.quality import (
    histogram_second_moment,
    quality_delta,
    upper_bound,
)

ARGS = {"stable": "m:1", "canary": "m:2", "window": "20s", "stable_window": "20s"}


class Outcomes:
    """Prometheus answering the confusion-count queries: (right, wrong) rows per variant."""

    def __init__(self, stable: tuple[int, int], canary: tuple[int, int]) -> None:
        self.rows = {"stable": stable, "canary": canary}

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        variant = "canary" if 'variant="canary"' in promql else "stable"
        right, wrong = self.rows[variant]
        return [
            ({"predicted_class": "1", "actual_class": "1"}, float(right)),
            ({"predicted_class": "1", "actual_class": "0"}, float(wrong)),
        ]

    def value(self, promql: str) -> float:
        raise AssertionError("classification reads no single values")


def _delta(stable: tuple[int, int], canary: tuple[int, int], min_labels: int = 30) -> Any:
    return quality_delta(Outcomes(stable, canary), ARGS, min_labels)  # type: ignore[arg-type]


def test_a_small_noisy_dip_is_within_the_bound() -> None:
    # What the demo measured: ~200 canary labels 4.5 points below ~600 stable ones.
    value, _, note = _delta(stable=(447, 153), canary=(140, 60))
    assert value is not None and value > -0.02  # passes `min: -0.02`
    assert "difference -0.0450" in note and "upper 95% bound" in note


def test_a_clearly_worse_canary_fails() -> None:
    value, _, _ = _delta(stable=(4500, 1500), canary=(1200, 800))
    assert value is not None and value < -0.02  # 0.60 vs 0.75 on thousands of labels


def test_too_few_labels_is_no_number() -> None:
    value, _, note = _delta(stable=(400, 100), canary=(10, 5))
    assert value is None and "too few labelled rows" in note


def test_upper_bound_is_one_sided_95_percent() -> None:
    assert upper_bound(0.0, 1.0) == pytest.approx(1.6449, abs=1e-4)
    assert upper_bound(-0.1, 0.0) == -0.1


def test_second_moment_from_buckets() -> None:
    # 10 rows in (0, 1] at 0.5 and 10 in (1, 3] at 2: E[x²] = (2.5 + 40) / 20.
    assert histogram_second_moment({"1": 10, "3": 10, "+Inf": 0}) == pytest.approx(2.125)
    # Rows above the last finite edge sit at that edge.
    assert histogram_second_moment({"1": 0, "+Inf": 4}) == pytest.approx(1.0)
    assert math.isnan(histogram_second_moment({}))


class Errors:
    """Prometheus answering the regression queries: absolute errors per variant."""

    def __init__(self, errors: dict[str, list[float]]) -> None:
        self.errors = errors
        self.edges = [0.5, 1.0, 2.0, 4.0, math.inf]

    @staticmethod
    def _variant(promql: str) -> str:
        return "canary" if 'variant="canary"' in promql else "stable"

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        if "_bucket" not in promql:
            return []  # no confusion counts: a regression model
        errors = self.errors[self._variant(promql)]
        return [
            ({"le": "+Inf" if math.isinf(e) else f"{e:g}"}, float(sum(x <= e for x in errors)))
            for e in self.edges
        ]

    def value(self, promql: str) -> float:
        errors = self.errors[self._variant(promql)]
        return float(sum(errors)) if "_sum" in promql else float(len(errors))


def test_regression_compares_mae_with_its_spread() -> None:
    stable = [0.3, 0.7, 1.5] * 100  # MAE 0.833
    close = [0.3, 0.8, 1.5] * 30  # MAE 0.867 on 90 rows: within the noise
    worse = [1.5, 3.0, 3.0] * 300  # MAE 2.5
    value, query, note = quality_delta(Errors({"stable": stable, "canary": close}), ARGS, 30)  # type: ignore[arg-type]
    assert value is not None and value > -0.02 and "mae" in note
    assert "_sum" in query and "_count" in query
    value, _, _ = quality_delta(Errors({"stable": stable, "canary": worse}), ARGS, 30)  # type: ignore[arg-type]
    assert value is not None and value < -1.0

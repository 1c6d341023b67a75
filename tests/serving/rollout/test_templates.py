"""Metric templates and the PSI arithmetic of the canary analysis."""

from __future__ import annotations

import math

import pytest

from kubeloop.serving import metrics
from kubeloop.serving.rollout import templates
from kubeloop.serving.rollout.templates import bucket_counts, class_counts, fill, psi, window


def test_psi_is_zero_for_identical_distributions_and_grows_with_the_shift() -> None:
    stable = {"no": 500.0, "yes": 500.0}
    assert psi(stable, {"no": 50.0, "yes": 50.0}) == pytest.approx(0.0, abs=1e-12)
    mild = psi(stable, {"no": 60.0, "yes": 40.0})
    strong = psi(stable, {"no": 90.0, "yes": 10.0})
    assert 0 < mild < 0.1 < strong


def test_psi_of_a_constant_predictor_is_large_but_finite() -> None:
    """A class the canary never predicts would make plain PSI infinite; smoothing keeps it
    a number far above the usual 0.2 bound."""
    value = psi({"no": 500.0, "yes": 500.0}, {"no": 100.0})
    assert math.isfinite(value) and value > 1.0


def test_psi_is_nan_without_rows_on_either_side() -> None:
    assert math.isnan(psi({}, {"no": 5.0}))
    assert math.isnan(psi({"no": 5.0}, {"no": 0.0}))


def test_psi_ignores_bins_empty_on_both_sides() -> None:
    base = psi({"a": 10.0, "b": 30.0}, {"a": 20.0, "b": 20.0})
    assert psi({"a": 10.0, "b": 30.0, "c": 0.0}, {"a": 20.0, "b": 20.0, "c": 0.0}) == base


def test_bucket_counts_turns_cumulative_buckets_into_per_bucket_rows() -> None:
    samples = [({"le": "+Inf"}, 10.0), ({"le": "0.5"}, 4.0), ({"le": "1"}, 7.0)]
    assert bucket_counts(samples) == {"0.5": 4.0, "1": 3.0, "inf": 3.0}


def test_class_counts_treat_nan_and_negative_as_zero() -> None:
    samples = [({"predicted_class": "yes"}, 3.0), ({"predicted_class": "no"}, math.nan)]
    assert class_counts(samples) == {"yes": 3.0, "no": 0.0}


def test_fill_replaces_only_known_placeholders_and_escapes_label_values() -> None:
    query = 'sum(rate(x{job="a",model="{canary}"}[{window}]))'
    assert fill(query, {"canary": 'c"1', "window": "5s"}) == (
        'sum(rate(x{job="a",model="c\\"1"}[5s]))'
    )
    with pytest.raises(KeyError, match="stable"):
        fill("{stable}", {})


def test_window_is_whole_seconds_at_least_one() -> None:
    assert (window(0.2), window(2.0), window(2.1)) == ("1s", "2s", "3s")


def test_templates_select_variant_and_model_and_use_the_metric_constants() -> None:
    rendered = templates.REQUESTS.render(variant="canary", model="churn:v2", window="3s")
    assert metrics.GATEWAY_REQUESTS_TOTAL in rendered
    assert 'variant="canary",model="churn:v2"' in rendered
    ratio = templates.LATENCY_P99_RATIO.render(
        stable="churn:v1", canary="churn:v2", window="3s", stable_window="9s"
    )
    assert f"{metrics.GATEWAY_REQUEST_LATENCY_SECONDS}_bucket" in ratio
    assert 'variant="canary",model="churn:v2"}[3s]' in ratio
    assert 'variant="stable",model="churn:v1"}[9s]' in ratio
    names = [t.query for t in templates.BUILTIN_TEMPLATES.values()]
    assert all(metrics.GATEWAY_PREFIX in q for q in names)

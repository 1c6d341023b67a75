"""The ``live_quality_delta`` check: canary vs stable quality from ground-truth labels.

Bigger is better, so ``min: -0.02`` reads "the canary may be at most 0.02 worse":

* classification: canary accuracy - stable accuracy, from the confusion counts
  (``kubeloop_gateway_feedback_outcomes_total``) of the labels that arrived in each window;
* regression: stable MAE - canary MAE, from ``kubeloop_gateway_feedback_absolute_error``.

The check's value is the **upper 95 % confidence bound** of that difference (normal
approximation: the two proportions' variances, or the absolute errors' variance read from
the histogram's buckets), so a canary fails only when the labels show it worse than the
bound allows, not when a few hundred rows happen to favour stable. Measured in the demo:
a window of about 200 canary labels has a standard error near 0.035 on the accuracy
difference, so a bare difference against ``min: -0.02`` rolled back a better model.

Fewer than ``serve.min_labels`` labelled rows on either side is no number (insufficient data,
never a pass). Labels count in the window they arrive in, so a rollout whose labels come
hours later needs ``interval_s`` (or the check's bound) chosen for that; it is not a default
check for that reason.
"""

from __future__ import annotations

import math

from kubeloop.serving.rollout.prometheus import PrometheusClient
from kubeloop.serving.rollout.templates import (
    FEEDBACK_ERROR_BUCKETS,
    FEEDBACK_ERROR_COUNT,
    FEEDBACK_ERROR_SUM,
    FEEDBACK_OUTCOMES,
    MetricTemplate,
    bucket_counts,
)

VARIANTS = ("stable", "canary")
CONFIDENCE = 0.95  # one-sided: the value is the upper bound of the difference


def _finite(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


def _z() -> float:
    from scipy.stats import norm

    return float(norm.ppf(CONFIDENCE))


def upper_bound(difference: float, variance: float) -> float:
    """The one-sided upper confidence bound of `difference` given its variance."""
    return difference + _z() * math.sqrt(max(0.0, variance))


def histogram_second_moment(buckets: dict[str, float]) -> float:
    """E[x²] of a histogram from its per-bucket counts (``{le: rows}``), each row at its
    bucket's midpoint (the +Inf bucket at its lower edge)."""
    edges = sorted((float(le), n) for le, n in buckets.items())
    total = sum(n for _, n in edges)
    if total <= 0:
        return math.nan
    moment, lower = 0.0, 0.0
    for upper, n in edges:
        point = lower if math.isinf(upper) else (lower + upper) / 2
        moment += n * point * point
        lower = upper if not math.isinf(upper) else lower
    return moment / total


def quality_delta(
    prometheus: PrometheusClient, args: dict[str, str], min_labels: int
) -> tuple[float | None, str, str]:
    """(upper bound of the difference or None, the queries, a note with each side's rows,
    quality and the difference itself)."""

    def render(template: MetricTemplate, variant: str) -> str:
        window = args["window" if variant == "canary" else "stable_window"]
        return template.render(variant=variant, model=args[variant], window=window)

    # Classification: accuracy per side from the (predicted, actual) counts.
    queries = {v: render(FEEDBACK_OUTCOMES, v) for v in VARIANTS}
    counts = {v: prometheus.query(q) for v, q in queries.items()}
    rows = {v: sum(_finite(x) for _, x in counts[v]) for v in VARIANTS}
    variance: dict[str, float]
    if any(rows.values()):
        quality = {
            v: sum(
                _finite(x)
                for labels, x in counts[v]
                if labels.get("predicted_class") == labels.get("actual_class")
            )
            / rows[v]
            if rows[v]
            else math.nan
            for v in VARIANTS
        }
        variance = {v: quality[v] * (1 - quality[v]) for v in VARIANTS}
        name, sign = "accuracy", 1.0
    else:  # regression: MAE per side
        sums = {v: render(FEEDBACK_ERROR_SUM, v) for v in VARIANTS}
        counts_q = {v: render(FEEDBACK_ERROR_COUNT, v) for v in VARIANTS}
        queries = {v: f"{sums[v]} / {counts_q[v]}" for v in VARIANTS}
        rows = {v: _finite(prometheus.value(counts_q[v])) for v in VARIANTS}
        quality = {
            v: _finite(prometheus.value(sums[v])) / rows[v] if rows[v] else math.nan
            for v in VARIANTS
        }
        variance = {
            v: histogram_second_moment(
                bucket_counts(prometheus.query(render(FEEDBACK_ERROR_BUCKETS, v)))
            )
            - quality[v] ** 2
            for v in VARIANTS
        }
        name, sign = "mae", -1.0
    query = " ; ".join(queries.values())
    seen = ", ".join(f"{v} {rows[v]:.0f} rows {name} {quality[v]:.4g}" for v in VARIANTS)
    if min(rows.values()) < min_labels:
        return None, query, f"too few labelled rows ({seen}), need {min_labels} per variant"
    difference = sign * (quality["canary"] - quality["stable"])
    var = sum(variance[v] / rows[v] for v in VARIANTS)
    bound = upper_bound(difference, var)
    note = (
        f"{seen}; difference {difference:+.4f} ± {math.sqrt(max(0.0, var)):.4f} (s.e.), "
        f"upper {CONFIDENCE:.0%} bound {bound:+.4f}"
    )
    return bound, query, note

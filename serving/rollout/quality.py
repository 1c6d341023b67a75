"""The ``live_quality_delta`` check: canary vs stable quality from ground-truth labels.

Bigger is better, so ``min: -0.02`` reads "the canary may be at most 0.02 worse":

* classification: canary accuracy - stable accuracy, from the confusion counts
  (``kubeloop_gateway_feedback_outcomes_total``) of the labels that arrived in each window;
* regression: stable MAE - canary MAE, from ``kubeloop_gateway_feedback_absolute_error``.

Fewer than ``serve.min_labels`` labelled rows on either side is no number (insufficient data,
never a pass). Labels count in the window they arrive in, so a rollout whose labels come
hours later needs ``interval_s`` (or the check's bound) chosen for that; it is not a default
check for that reason.
"""

from __future__ import annotations

import math

from kubeloop.serving.rollout.prometheus import PrometheusClient
from kubeloop.serving.rollout.templates import (
    FEEDBACK_ERROR_COUNT,
    FEEDBACK_ERROR_SUM,
    FEEDBACK_OUTCOMES,
    MetricTemplate,
)

VARIANTS = ("stable", "canary")


def _finite(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


def quality_delta(
    prometheus: PrometheusClient, args: dict[str, str], min_labels: int
) -> tuple[float | None, str, str]:
    """(value or None, the queries, a note with each side's rows and quality)."""

    def render(template: MetricTemplate, variant: str) -> str:
        window = args["window" if variant == "canary" else "stable_window"]
        return template.render(variant=variant, model=args[variant], window=window)

    # Classification: accuracy per side from the (predicted, actual) counts.
    queries = {v: render(FEEDBACK_OUTCOMES, v) for v in VARIANTS}
    counts = {v: prometheus.query(q) for v, q in queries.items()}
    rows = {v: sum(_finite(x) for _, x in counts[v]) for v in VARIANTS}
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
        name, sign = "mae", -1.0
    query = " ; ".join(queries.values())
    seen = ", ".join(f"{v} {rows[v]:.0f} rows {name} {quality[v]:.4g}" for v in VARIANTS)
    if min(rows.values()) < min_labels:
        return None, query, f"too few labelled rows ({seen}), need {min_labels} per variant"
    return sign * (quality["canary"] - quality["stable"]), query, seen

"""Canary analysis as data: named metric templates over the gateway's metrics.

A template is PromQL with placeholders filled per analysis (Argo Rollouts' AnalysisTemplate
args): ``{variant}`` (``stable`` | ``canary``), ``{model}`` (that variant's tag), ``{stable}`` /
``{canary}`` (the two tags), ``{window}`` (the canary's window, e.g. ``60s``) and
``{stable_window}`` (the stable baseline's window). Every series is selected by variant AND
model tag, so a previous rollout's canary (same variant label, other tag) never leaks in.
Metric names come from :mod:`kubeloop.serving.metrics`, never from literals here.

The stable baseline uses the canary's window while stable still gets traffic. At the last
step (canary at 100 %) stable gets none, so its baseline window reaches back to the start of
the rollout: the same model over the traffic it served before.

Requests that were the caller's fault (``invalid``, ``not_found``) are no evidence about a
model: traffic and success rate count ``ok``, ``error`` and ``unavailable`` only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kubeloop.serving.metrics import (
    GATEWAY_FEEDBACK_ABSOLUTE_ERROR,
    GATEWAY_FEEDBACK_OUTCOMES_TOTAL,
    GATEWAY_PREDICTION_VALUE,
    GATEWAY_PREDICTIONS_TOTAL,
    GATEWAY_REQUEST_LATENCY_SECONDS,
    GATEWAY_REQUESTS_TOTAL,
)

JUDGED_OUTCOMES = "ok|error|unavailable"
ARGS = ("variant", "model", "stable", "canary", "window", "stable_window")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(ARGS) + r")\}")
# Pseudo-count added to every bin before PSI: without it one empty bin makes PSI infinite,
# and with a tiny epsilon instead a single stray row in a small window fails the check.
PSI_PSEUDO_COUNT = 0.5


@dataclass(frozen=True)
class MetricTemplate:
    """A named query with placeholders; `help` says what its number means."""

    name: str
    query: str
    help: str

    def render(self, **args: str) -> str:
        return fill(self.query, args)


def fill(query: str, args: Mapping[str, str]) -> str:
    """Replace the known ``{placeholders}``; PromQL's own braces (``x{job="a"}``) stay."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in args:
            raise KeyError(f"template placeholder {{{name}}} has no value")
        return _label_value(args[name]) if name not in ("window", "stable_window") else args[name]

    return _PLACEHOLDER.sub(sub, query)


def _label_value(value: str) -> str:
    """A value safe inside a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def window(seconds: float) -> str:
    """A PromQL range in whole seconds (at least 1 s)."""
    return f"{max(1, math.ceil(seconds))}s"


def _selector(metric: str, extra: str = "") -> str:
    labels = 'variant="{variant}",model="{model}"' + (f",{extra}" if extra else "")
    return metric + "{" + labels + "}"


_JUDGED = f'outcome=~"{JUDGED_OUTCOMES}"'
_OK = 'outcome="ok"'
_LATENCY_BUCKET = GATEWAY_REQUEST_LATENCY_SECONDS + "_bucket"
_VALUE_BUCKET = GATEWAY_PREDICTION_VALUE + "_bucket"

REQUESTS = MetricTemplate(
    "requests",
    f"sum(increase({_selector(GATEWAY_REQUESTS_TOTAL, _JUDGED)}[{{window}}]))",
    "requests the variant's model was judged on (ok, error, unavailable) in the window",
)
SUCCESS_RATE = MetricTemplate(
    "success_rate",
    # `or vector(0)`: a canary that never answered has no ok series at all, which is 0 %.
    f"(sum(increase({_selector(GATEWAY_REQUESTS_TOTAL, _OK)}[{{window}}])) or vector(0))"
    f" / sum(increase({_selector(GATEWAY_REQUESTS_TOTAL, _JUDGED)}[{{window}}]))",
    "share of judged requests answered ok",
)
LATENCY_P99 = MetricTemplate(
    "latency_p99",
    f"histogram_quantile(0.99, sum by (le) (rate({_selector(_LATENCY_BUCKET)}[{{window}}])))",
    "p99 latency of ok requests, seconds",
)
PREDICTED_CLASSES = MetricTemplate(
    "predicted_classes",
    f"sum by (predicted_class) (increase({_selector(GATEWAY_PREDICTIONS_TOTAL)}[{{window}}]))",
    "rows predicted per class in the window",
)
PREDICTED_VALUES = MetricTemplate(
    "predicted_values",
    f"sum by (le) (increase({_selector(_VALUE_BUCKET)}[{{window}}]))",
    "cumulative histogram of predicted values in the window",
)

# Ground-truth feedback (live_quality_delta): labels that arrived in the window.
FEEDBACK_OUTCOMES = MetricTemplate(
    "feedback_outcomes",
    "sum by (predicted_class, actual_class) "
    f"(increase({_selector(GATEWAY_FEEDBACK_OUTCOMES_TOTAL)}[{{window}}]))",
    "labelled rows per (predicted, actual) class in the window (classification)",
)
FEEDBACK_ERROR_SUM = MetricTemplate(
    "feedback_error_sum",
    f"sum(increase({_selector(GATEWAY_FEEDBACK_ABSOLUTE_ERROR + '_sum')}[{{window}}]))",
    "summed absolute error of the rows labelled in the window (regression)",
)
FEEDBACK_ERROR_BUCKETS = MetricTemplate(
    "feedback_error_buckets",
    f"sum by (le) (increase({_selector(GATEWAY_FEEDBACK_ABSOLUTE_ERROR + '_bucket')}[{{window}}]))",
    "cumulative histogram of the absolute errors of the rows labelled in the window",
)
FEEDBACK_ERROR_COUNT = MetricTemplate(
    "feedback_error_count",
    f"sum(increase({_selector(GATEWAY_FEEDBACK_ABSOLUTE_ERROR + '_count')}[{{window}}]))",
    "rows labelled in the window (regression)",
)


def _for(template: MetricTemplate, variant: str, window_arg: str) -> str:
    """`template` with {variant}/{model}/{window} bound to one side of the comparison."""
    return fill(
        template.query,
        {"variant": variant, "model": "{" + variant + "}", "window": "{" + window_arg + "}"},
    )


# The comparison checks: canary over {window} against stable over {stable_window}.
LATENCY_P99_RATIO = MetricTemplate(
    "latency_p99_ratio",
    f"({_for(LATENCY_P99, 'canary', 'window')}) / ({_for(LATENCY_P99, 'stable', 'stable_window')})",
    "canary p99 latency / stable p99 latency",
)
BUILTIN_TEMPLATES: dict[str, MetricTemplate] = {
    t.name: t
    for t in (
        REQUESTS,
        SUCCESS_RATE,
        LATENCY_P99,
        PREDICTED_CLASSES,
        PREDICTED_VALUES,
        FEEDBACK_OUTCOMES,
        FEEDBACK_ERROR_SUM,
        FEEDBACK_ERROR_COUNT,
    )
}


def class_counts(samples: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    """``sum by (predicted_class)`` samples -> {class: count} (NaN/negative counted as 0)."""
    out: dict[str, float] = {}
    for labels, value in samples:
        key = labels.get("predicted_class", "")
        out[key] = out.get(key, 0.0) + (value if math.isfinite(value) and value > 0 else 0.0)
    return out


def bucket_counts(samples: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    """Cumulative ``sum by (le)`` histogram samples -> {le: rows in that bucket alone}."""
    cumulative = sorted(
        ((float(labels["le"]), value) for labels, value in samples if "le" in labels),
        key=lambda pair: pair[0],
    )
    out: dict[str, float] = {}
    below = 0.0
    for le, value in cumulative:
        value = value if math.isfinite(value) else 0.0
        out[f"{le:g}"] = max(0.0, value - below)
        below = max(below, value)
    return out


def psi(
    expected: Mapping[str, float],
    actual: Mapping[str, float],
    pseudo_count: float = PSI_PSEUDO_COUNT,
) -> float:
    """Population stability index of `actual` (canary) against `expected` (stable) counts.

    Bins empty on both sides are ignored; every other bin gets `pseudo_count` added on both
    sides. NaN when either side has no rows (no data, never a pass)."""
    every = expected.keys() | actual.keys()
    bins = [b for b in every if max(expected.get(b, 0), actual.get(b, 0)) > 0]
    n_expected = sum(max(0.0, expected.get(b, 0.0)) for b in bins)
    n_actual = sum(max(0.0, actual.get(b, 0.0)) for b in bins)
    if n_expected <= 0 or n_actual <= 0:
        return math.nan
    k = len(bins)
    total = 0.0
    for b in bins:
        p = (max(0.0, actual.get(b, 0.0)) + pseudo_count) / (n_actual + pseudo_count * k)
        q = (max(0.0, expected.get(b, 0.0)) + pseudo_count) / (n_expected + pseudo_count * k)
        total += (p - q) * math.log(p / q)
    return total

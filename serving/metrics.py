"""Prometheus metrics of the serving layer: names defined once, objects created once per process.

Names carry their unit (``_seconds``, ``_total``) and few labels: ``model`` is the served tag
(``name:version``), so stable and canary of a rollout are told apart by their version.
The canary analysis (later) queries these names through the constants below, never through
string literals of its own. A request refused before any model loaded (``unavailable``) is
labelled with the requested tag, which may be a stage alias (``churn:production``).

BentoML's own per-endpoint series (``bentoml_service_request_*``) count a ``/predict`` twice:
once for ``/predict`` and once for its self-call into the batchable ``/score``. Analyses over
those series must filter ``endpoint!="/score"``; the ``kubeloop_variant_*`` series below count
each ``/predict`` once.

The ``prometheus_client`` objects are created lazily, on the first :func:`variant_metrics`
call (a service instance's start-up), not at import: under ``bentoml serve`` the worker
must have set ``PROMETHEUS_MULTIPROC_DIR`` before ``prometheus_client`` builds its first
metric, or the metric never reaches ``/metrics`` (see ``bentoml/metrics.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

PREFIX = "kubeloop_variant"
# Counter names are given without `_total`: prometheus_client appends it on exposition.
REQUESTS_TOTAL = f"{PREFIX}_requests_total"
REQUEST_LATENCY_SECONDS = f"{PREFIX}_request_latency_seconds"
BATCH_SIZE = f"{PREFIX}_batch_size"
PREDICTIONS_TOTAL = f"{PREFIX}_predictions_total"
PREDICTION_VALUE = f"{PREFIX}_prediction_value"

# The gateway (stable | canary): what canary analysis, alert rules and dashboards query.
# Labels: `variant` ("stable" | "canary" | "shadow"), `model` (the tag that answered).
GATEWAY_PREFIX = "kubeloop_gateway"
GATEWAY_REQUESTS_TOTAL = f"{GATEWAY_PREFIX}_requests_total"  # variant, model, outcome
GATEWAY_REQUEST_LATENCY_SECONDS = f"{GATEWAY_PREFIX}_request_latency_seconds"  # variant, model
GATEWAY_PREDICTIONS_TOTAL = f"{GATEWAY_PREFIX}_predictions_total"  # variant, model, predicted_class
GATEWAY_PREDICTION_SCORE = f"{GATEWAY_PREFIX}_prediction_score"  # variant, model (binary P(pos))
GATEWAY_PREDICTION_VALUE = f"{GATEWAY_PREFIX}_prediction_value"  # variant, model (regression)
GATEWAY_REQUEST_ROWS = f"{GATEWAY_PREFIX}_request_rows"  # variant: rows per routed request
GATEWAY_FEATURE_LOOKUP_SECONDS = f"{GATEWAY_PREFIX}_feature_lookup_seconds"  # (no labels)
GATEWAY_WEIGHT_PERCENT = f"{GATEWAY_PREFIX}_weight_percent"  # variant: current traffic share
GATEWAY_ROLLOUT_PHASE = f"{GATEWAY_PREFIX}_rollout_phase"  # phase: 1 for the current phase
GATEWAY_PREDICTION_LOG_DROPPED_TOTAL = f"{GATEWAY_PREFIX}_prediction_log_dropped_total"

Outcome = Literal["ok", "invalid", "error", "unavailable"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "invalid", "error", "unavailable")

# Latency: sub-millisecond in-process calls up to multi-second overload.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Rows per model call after adaptive batching (powers of two up to a large batch).
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024
# Regression values are in the label's own units, unknown here and shared by all models of a
# process (stable and canary predict the same label): 1-2-5 steps over 1e-2 .. 5e6, both signs,
# so any label range lands in a dozen or more buckets for the distribution comparison.
_STEPS = tuple(m * 10.0**k for k in range(-2, 7) for m in (1, 2, 5))
VALUE_BUCKETS = (*sorted(-s for s in _STEPS), 0.0, *_STEPS)


def _counter_base(name: str) -> str:
    return name.removesuffix("_total")


@dataclass(frozen=True)
class VariantMetrics:
    """The metric objects a model variant updates."""

    requests: Counter  # labels: model, outcome
    latency: Histogram  # labels: model
    batch_size: Histogram  # labels: model
    predictions: Counter  # labels: model, predicted_class (classification)
    prediction_value: Histogram  # labels: model (regression)

    def observe_request(self, model: str, outcome: Outcome, seconds: float) -> None:
        self.requests.labels(model=model, outcome=outcome).inc()
        if outcome == "ok":  # latency of answered requests; rejected ones are near-instant
            self.latency.labels(model=model).observe(seconds)

    def observe_batch(self, model: str, size: int) -> None:
        self.batch_size.labels(model=model).observe(size)

    def observe_classes(self, model: str, counts: Iterable[tuple[str, int]]) -> None:
        """Per-class prediction counts of one batch (one ``inc`` per class, not per row)."""
        for cls, n in counts:
            self.predictions.labels(model=model, predicted_class=cls).inc(n)

    def observe_values(self, model: str, values: Iterable[float]) -> None:
        hist = self.prediction_value.labels(model=model)
        for v in values:
            hist.observe(v)


@functools.cache
def variant_metrics() -> VariantMetrics:
    """The process-wide metric objects (prometheus_client refuses to register a name twice)."""
    from prometheus_client import Counter, Histogram

    return VariantMetrics(
        requests=Counter(
            _counter_base(REQUESTS_TOTAL),
            "Prediction requests answered by a model variant, by outcome "
            "(ok, invalid = 4xx input error, error = 5xx, unavailable = model not loaded).",
            ["model", "outcome"],
        ),
        latency=Histogram(
            REQUEST_LATENCY_SECONDS,
            "Time to answer one successful prediction request (validation + model + batching).",
            ["model"],
            buckets=LATENCY_BUCKETS,
        ),
        batch_size=Histogram(
            BATCH_SIZE,
            "Rows scored per model call after adaptive batching.",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
        ),
        predictions=Counter(
            _counter_base(PREDICTIONS_TOTAL),
            "Predicted rows per class (classification models).",
            ["model", "predicted_class"],
        ),
        prediction_value=Histogram(
            PREDICTION_VALUE,
            "Predicted values (regression models), in the label's units.",
            ["model"],
            buckets=VALUE_BUCKETS,
        ),
    )

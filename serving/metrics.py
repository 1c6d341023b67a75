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
    from prometheus_client import Counter, Gauge, Histogram

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
# Ground-truth feedback (POST /feedback), counted when a label joins a recently served row.
GATEWAY_FEEDBACK_LABELS_TOTAL = f"{GATEWAY_PREFIX}_feedback_labels_total"  # variant, model
# variant, model, predicted_class, actual_class (classification confusion counts)
GATEWAY_FEEDBACK_OUTCOMES_TOTAL = f"{GATEWAY_PREFIX}_feedback_outcomes_total"
GATEWAY_FEEDBACK_ABSOLUTE_ERROR = f"{GATEWAY_PREFIX}_feedback_absolute_error"  # variant, model
# variant, model, metric (accuracy | f1 | roc_auc | mae | rmse) over the last labelled rows
GATEWAY_LIVE_QUALITY = f"{GATEWAY_PREFIX}_live_quality"

Outcome = Literal["ok", "invalid", "error", "unavailable"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "invalid", "error", "unavailable")
# The gateway adds `not_found`: entity ids the online store does not know (404).
GatewayOutcome = Literal["ok", "invalid", "not_found", "error", "unavailable"]
GatewayVariant = Literal["stable", "canary", "shadow"]

# Latency: sub-millisecond in-process calls up to multi-second overload.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Rows per model call after adaptive batching (powers of two up to a large batch).
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024
# Regression values are in the label's own units, unknown here and shared by all models of a
# process (stable and canary predict the same label): 1-2-5 steps over 1e-2 .. 5e6, both signs,
# so any label range lands in a dozen or more buckets for the distribution comparison.
_STEPS = tuple(m * 10.0**k for k in range(-2, 7) for m in (1, 2, 5))
VALUE_BUCKETS = (*sorted(-s for s in _STEPS), 0.0, *_STEPS)
# P(positive class) of binary models: 0.05 .. 1.0 in 0.05 steps.
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
# |prediction - label| of regression models, in the label's units (see VALUE_BUCKETS).
ERROR_BUCKETS = (0.0, *_STEPS)


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


@dataclass(frozen=True)
class GatewayMetrics:
    """The metric objects the gateway updates (labels as listed by the GATEWAY_* names)."""

    requests: Counter  # variant, model, outcome
    latency: Histogram  # variant, model
    predictions: Counter  # variant, model, predicted_class
    score: Histogram  # variant, model
    value: Histogram  # variant, model
    rows: Histogram  # variant
    lookup: Histogram  # (none)
    weight: Gauge  # variant
    phase: Gauge  # phase
    log_dropped: Counter  # (none)
    feedback_labels: Counter  # variant, model
    feedback_outcomes: Counter  # variant, model, predicted_class, actual_class
    feedback_error: Histogram  # variant, model
    live_quality: Gauge  # variant, model, metric

    def observe_request(
        self, variant: GatewayVariant, model: str, outcome: GatewayOutcome, seconds: float
    ) -> None:
        self.requests.labels(variant=variant, model=model, outcome=outcome).inc()
        if outcome == "ok":
            self.latency.labels(variant=variant, model=model).observe(seconds)

    def observe_rows(self, variant: GatewayVariant, n: int) -> None:
        self.rows.labels(variant=variant).observe(n)

    def observe_classes(
        self, variant: GatewayVariant, model: str, counts: Iterable[tuple[str, int]]
    ) -> None:
        for cls, n in counts:
            self.predictions.labels(variant=variant, model=model, predicted_class=cls).inc(n)

    def observe_scores(self, variant: GatewayVariant, model: str, scores: Iterable[float]) -> None:
        hist = self.score.labels(variant=variant, model=model)
        for s in scores:
            hist.observe(s)

    def observe_values(self, variant: GatewayVariant, model: str, values: Iterable[float]) -> None:
        hist = self.value.labels(variant=variant, model=model)
        for v in values:
            hist.observe(v)

    def set_routing(self, canary_percent: float, phase: str, phases: Iterable[str]) -> None:
        """Current weights and rollout phase (1 for the current phase, 0 for the others)."""
        self.weight.labels(variant="canary").set(canary_percent)
        self.weight.labels(variant="stable").set(100.0 - canary_percent)
        for p in phases:
            self.phase.labels(phase=p).set(1.0 if p == phase else 0.0)


@functools.cache
def gateway_metrics() -> GatewayMetrics:
    """The process-wide gateway metric objects (created on first use, see the module doc)."""
    from prometheus_client import Counter, Gauge, Histogram

    # Gauges under `bentoml serve` live in prometheus_client's multiprocess mode, whose
    # default ("all") adds a `pid` label; the gateway runs one worker, so the value most
    # recently set by a live process is the value.
    mode: Literal["livemostrecent"] = "livemostrecent"
    return GatewayMetrics(
        requests=Counter(
            _counter_base(GATEWAY_REQUESTS_TOTAL),
            "Gateway requests per variant that served rows of them, by outcome (ok, invalid = "
            "400, not_found = unknown entity ids, error = the variant failed, unavailable = "
            "no model ready).",
            ["variant", "model", "outcome"],
        ),
        latency=Histogram(
            GATEWAY_REQUEST_LATENCY_SECONDS,
            "Time from request arrival until a variant answered its rows (ok requests).",
            ["variant", "model"],
            buckets=LATENCY_BUCKETS,
        ),
        predictions=Counter(
            _counter_base(GATEWAY_PREDICTIONS_TOTAL),
            "Rows predicted per class and variant (classification models).",
            ["variant", "model", "predicted_class"],
        ),
        score=Histogram(
            GATEWAY_PREDICTION_SCORE,
            "Probability of the positive class per row (binary models).",
            ["variant", "model"],
            buckets=SCORE_BUCKETS,
        ),
        value=Histogram(
            GATEWAY_PREDICTION_VALUE,
            "Predicted values per row (regression models), in the label's units.",
            ["variant", "model"],
            buckets=VALUE_BUCKETS,
        ),
        rows=Histogram(
            GATEWAY_REQUEST_ROWS,
            "Rows of one request routed to a variant.",
            ["variant"],
            buckets=BATCH_SIZE_BUCKETS,
        ),
        lookup=Histogram(
            GATEWAY_FEATURE_LOOKUP_SECONDS,
            "Online feature store lookup time per request (entity-id requests).",
            buckets=LATENCY_BUCKETS,
        ),
        weight=Gauge(
            GATEWAY_WEIGHT_PERCENT,
            "Current traffic share per variant, in percent.",
            ["variant"],
            multiprocess_mode=mode,
        ),
        phase=Gauge(
            GATEWAY_ROLLOUT_PHASE,
            "Rollout phase of the gateway: 1 for the current phase, 0 for the others.",
            ["phase"],
            multiprocess_mode=mode,
        ),
        log_dropped=Counter(
            _counter_base(GATEWAY_PREDICTION_LOG_DROPPED_TOTAL),
            "Prediction log records dropped because the writer's queue was full.",
        ),
        feedback_labels=Counter(
            _counter_base(GATEWAY_FEEDBACK_LABELS_TOTAL),
            "Ground-truth labels joined to a row the variant served (POST /feedback).",
            ["variant", "model"],
        ),
        feedback_outcomes=Counter(
            _counter_base(GATEWAY_FEEDBACK_OUTCOMES_TOTAL),
            "Labelled rows by predicted and actual class (classification confusion counts).",
            ["variant", "model", "predicted_class", "actual_class"],
        ),
        feedback_error=Histogram(
            GATEWAY_FEEDBACK_ABSOLUTE_ERROR,
            "Absolute error |prediction - label| of labelled rows (regression), label units.",
            ["variant", "model"],
            buckets=ERROR_BUCKETS,
        ),
        live_quality=Gauge(
            GATEWAY_LIVE_QUALITY,
            "Quality over the last monitor.quality_window labelled rows (accuracy, f1, roc_auc "
            "or mae, rmse), exported once monitor.min_labels rows are labelled.",
            ["variant", "model", "metric"],
            multiprocess_mode=mode,
        ),
    )

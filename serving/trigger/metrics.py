"""Metrics of the retrain trigger (names defined once; the rules alert on them).

Each trigger gets its own ``CollectorRegistry`` (served on its ``/metrics``), so several
triggers in one process (tests) do not clash in prometheus_client's global registry. Every
label value is created at zero up front: ``increase()`` in the rules needs the zero sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge

RETRAIN_RUNS_TOTAL = "kubeloop_retrain_runs_total"  # outcome
RETRAIN_NOTIFICATIONS_TOTAL = "kubeloop_retrain_notifications_total"  # result
RETRAIN_LAST_RUN_TIMESTAMP_SECONDS = "kubeloop_retrain_last_run_timestamp_seconds"
RETRAIN_RUNS_PENDING = "kubeloop_retrain_runs_pending"  # queued or running

# canary_started: gate passed and a canary rollout began; gate_passed: gate passed but no
# rollout was started (none configured); rollout_failed: the rollout could not start;
# gate_failed: the current model stays; failed: the pipeline stopped before the gate.
RunOutcome = Literal["canary_started", "gate_passed", "rollout_failed", "gate_failed", "failed"]
RUN_OUTCOMES: tuple[RunOutcome, ...] = get_args(RunOutcome)
# ignored: only resolved alerts in the notification, or retraining is disabled in the spec.
NotificationResult = Literal["accepted", "duplicate", "cooldown", "budget", "invalid", "ignored"]
NOTIFICATION_RESULTS: tuple[NotificationResult, ...] = get_args(NotificationResult)


@dataclass(frozen=True)
class TriggerMetrics:
    runs: Counter
    notifications: Counter
    last_run: Gauge
    pending: Gauge


def trigger_metrics(registry: CollectorRegistry) -> TriggerMetrics:
    from prometheus_client import Counter, Gauge

    runs = Counter(
        RETRAIN_RUNS_TOTAL.removesuffix("_total"),
        "Retraining runs finished by the trigger, by outcome (canary_started, gate_passed, "
        "rollout_failed, gate_failed, failed).",
        ["outcome"],
        registry=registry,
    )
    notifications = Counter(
        RETRAIN_NOTIFICATIONS_TOTAL.removesuffix("_total"),
        "Alertmanager notifications received, by what the trigger did with them (accepted, "
        "duplicate, cooldown, budget, invalid, ignored).",
        ["result"],
        registry=registry,
    )
    for outcome in RUN_OUTCOMES:
        runs.labels(outcome=outcome)
    for result in NOTIFICATION_RESULTS:
        notifications.labels(result=result)
    return TriggerMetrics(
        runs=runs,
        notifications=notifications,
        last_run=Gauge(
            RETRAIN_LAST_RUN_TIMESTAMP_SECONDS,
            "When the last retraining run finished (Unix time; 0 before the first).",
            registry=registry,
        ),
        pending=Gauge(
            RETRAIN_RUNS_PENDING,
            "Accepted retraining requests not finished yet (queued or running).",
            registry=registry,
        ),
    )

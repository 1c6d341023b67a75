"""RetrainTrigger: admits Alertmanager notifications and runs one retraining at a time.

``notify`` decides at once (see :func:`kubeloop.serving.trigger.state.admit`) and, for an
accepted notification, persists the new request before it returns; a background worker
runs the queued requests one after another through the pipeline runner, then acts on the
gate's verdict: passed -> start a canary rollout of the new model; failed -> keep the
current model. Every finished request leaves a decision record
(``<workdir>/trigger/decisions/<request id>.json``) and a ``kubeloop_retrain_runs_total``
sample saying which way it went.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kubeloop.components.core.io import write_text_atomic
from kubeloop.components.core.spec import Spec
from kubeloop.serving.monitoring.metrics import ModelAgeCollector
from kubeloop.serving.trigger.metrics import (
    NotificationResult,
    RunOutcome,
    TriggerMetrics,
    trigger_metrics,
)
from kubeloop.serving.trigger.runners import PipelineRunner, RunResult
from kubeloop.serving.trigger.state import (
    DAY_S,
    RetrainRequest,
    StateStore,
    TriggerState,
    accept,
    admit,
)
from kubeloop.serving.trigger.webhook import WebhookPayload

log = logging.getLogger(__name__)
# A run interrupted by a restart is started again this many times in all, then given up.
MAX_ATTEMPTS = 2


class RolloutStarter(Protocol):
    def __call__(self, spec: Spec, candidate: str) -> dict[str, Any]:
        """Start a canary rollout of `candidate` (a model tag) without waiting for it;
        returns what the decision record should show about it."""
        ...


class RetrainTrigger:
    """The trigger's logic, independent of HTTP (the Starlette app wraps it)."""

    def __init__(
        self,
        spec: Spec,
        runner: PipelineRunner,
        *,
        rollout: RolloutStarter | None = None,
        registry: Any = None,
        model_age: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from prometheus_client import CollectorRegistry

        self.spec = spec
        self.runner = runner
        self.rollout = rollout
        self.clock = clock
        self.folder = Path(spec.workdir) / "trigger"
        self.decisions = self.folder / "decisions"
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics: TriggerMetrics = trigger_metrics(self.registry)
        if model_age:  # ModelStale's input, read from the registry at scrape time
            self.registry.register(ModelAgeCollector(spec.name))
        self._store = StateStore(self.folder)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._busy = False
        self._worker: threading.Thread | None = None
        self.state: TriggerState = self._store.load()  # a bad file stops start-up, loudly
        self._recover()

    # ------------------------------------------------------------------ notifications

    def notify(self, payload: WebhookPayload) -> tuple[NotificationResult, str | None]:
        """Admit one notification; returns the result and the request id when accepted."""
        firing = payload.firing()
        policy = self.spec.retrain
        with self._lock:
            now = self.clock()
            result = admit(
                self.state,
                firing,
                now,
                enabled=policy.enabled,
                cooldown_s=policy.cooldown_s,
                daily_budget=policy.daily_budget,
            )
            request_id = None
            if result == "accepted":
                request = accept(self.state, firing, now)
                self.state.prune(now)
                self._store.save(self.state)  # before the reply: a crash now loses nothing
                request_id = request.id
                self._wake.notify_all()
            self.metrics.notifications.labels(result=result).inc()
            self.metrics.pending.set(len(self.state.pending()))
        log.info("notification %s: %s", [a.name for a in firing], result)
        return result, request_id

    def count_invalid(self) -> None:
        self.metrics.notifications.labels(result="invalid").inc()

    # ------------------------------------------------------------------ worker

    def start(self) -> None:
        if self._worker is None:
            self._stop = False
            self._worker = threading.Thread(target=self._work, name="retrain-worker", daemon=True)
            self._worker.start()

    def alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop taking new requests; a run in progress finishes (it is a separate process)
        unless the timeout ends the wait first, in which case a restart recovers it."""
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout_s)
            self._worker = None

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no request is queued or running (True), or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self.state.pending() or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(left)
            return True

    def _next(self) -> RetrainRequest | None:
        with self._lock:
            while not self._stop:
                pending = self.state.pending()
                if pending:
                    self._busy = True
                    return pending[0]
                self._wake.wait()
            return None

    def _work(self) -> None:
        while (request := self._next()) is not None:
            try:
                self._process(request)
            except Exception:  # keep serving; the request is marked failed below
                log.exception("retrain request %s failed", request.id)
                self._finish(request, "failed", {"action": "none", "error": "trigger error"})
            finally:
                with self._lock:
                    self._busy = False
                    self._wake.notify_all()

    def _save(self, request: RetrainRequest, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(request, key, value)
            self._store.save(self.state)
            self.metrics.pending.set(len(self.state.pending()))

    def _process(self, request: RetrainRequest) -> None:
        if request.status in ("queued", "running"):
            result = None
            if request.status == "running" and request.run_id:
                result = self.runner.recover(request.run_id)
            if result is None:
                result = self._run(request)
            self._save(request, status="ran", run=result.model_dump(mode="json"))
        self._decide(request, RunResult.model_validate(request.run))

    def _run(self, request: RetrainRequest) -> RunResult:
        from kubeloop.pipelines.local import new_run_id

        if request.attempts >= MAX_ATTEMPTS:
            return RunResult(
                run_id=request.run_id or "",
                status="failed",
                error=f"interrupted {request.attempts} times by trigger restarts; not retried",
            )
        run_id = new_run_id(self.spec)
        self._save(request, status="running", run_id=run_id, attempts=request.attempts + 1)
        log.info("retrain request %s: running pipeline run %s", request.id, run_id)
        return self.runner.run(run_id)

    # ------------------------------------------------------------------ decisions

    def _decide(self, request: RetrainRequest, result: RunResult) -> None:
        outcome: RunOutcome
        detail: dict[str, Any]
        if result.status == "succeeded" and result.gate_passed and result.model_tag:
            outcome, detail = self._start_canary(result.model_tag)
        elif result.status in ("succeeded", "gate_failed"):
            outcome = "gate_failed"
            detail = {
                "action": "none",
                "reason": "the retrained model failed the evaluation gate; the current "
                "model keeps serving",
                "gate_reasons": result.gate_reasons,
            }
        else:
            outcome = "failed"
            detail = {
                "action": "none",
                "reason": f"the retraining run stopped before the gate ({result.status}); "
                "the current model keeps serving",
                "error": result.error,
            }
        self._finish(request, outcome, detail)

    def _start_canary(self, candidate: str) -> tuple[RunOutcome, dict[str, Any]]:
        if self.rollout is None:
            return "gate_passed", {
                "action": "none",
                "candidate": candidate,
                "reason": "the gate passed but no rollout starter is configured; start it "
                f"with `kubeloop rollout start --candidate {candidate}`",
            }
        try:
            info = self.rollout(self.spec, candidate)
        except Exception as err:  # the decision record must say why, whatever it was
            return "rollout_failed", {
                "action": "none",
                "candidate": candidate,
                "reason": f"the gate passed but the canary rollout did not start: {err}",
            }
        return "canary_started", {"action": "canary", "candidate": candidate, "rollout": info}

    def _finish(self, request: RetrainRequest, outcome: RunOutcome, detail: dict[str, Any]) -> None:
        now = self.clock()
        path = self.decisions / f"{request.id}.json"
        record = {
            "request": request.id,
            "outcome": outcome,
            **detail,
            "accepted_at": _iso(request.accepted_at),
            "decided_at": _iso(now),
            "alerts": [a.model_dump(mode="json") for a in request.alerts],
            "run": request.run,
            "policy": self.spec.retrain.model_dump(mode="json"),
        }
        write_text_atomic(path, json.dumps(record, indent=2, default=str))
        self._save(request, status="done", outcome=outcome, decision=str(path), finished_at=now)
        self.metrics.runs.labels(outcome=outcome).inc()
        self.metrics.last_run.set(now)
        log.info("retrain request %s: %s (%s)", request.id, outcome, path)

    # ------------------------------------------------------------------ restart

    def _recover(self) -> None:
        """Counters restart at zero with the process; the last-run gauge comes back."""
        finished = [r.finished_at for r in self.state.requests if r.finished_at]
        if finished:
            self.metrics.last_run.set(max(finished))
        self.metrics.pending.set(len(self.state.pending()))

    def status(self) -> dict[str, Any]:
        with self._lock:
            now = self.clock()
            last = self.state.last_accepted_at()
            policy = self.spec.retrain
            return {
                "enabled": policy.enabled,
                "cooldown_left_s": max(0.0, policy.cooldown_s - (now - last)) if last else 0.0,
                "budget_left": max(0, policy.daily_budget - self.state.accepted_since(now - DAY_S)),
                "pending": [r.model_dump(mode="json") for r in self.state.pending()],
                "recent": [r.model_dump(mode="json") for r in self.state.requests[-10:]],
            }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()

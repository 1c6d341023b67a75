"""The canary controller: a level-triggered reconcile loop (Flagger / Argo Rollouts semantics).

Each :meth:`Controller.tick` reads ``state.json``, compares it with the world and takes at
most one step toward the goal, then writes the state back (under the state lock):

* ``progressing``: re-assert the gateway (canary loaded, weight = the step's weight; a gateway
  that restarted converges here). Once the step has been held ``interval_s``, analyse the
  last ``interval_s`` through Prometheus:

  - ``pass``: next step (new weight, new window); after the last step: promote;
  - ``fail``: count it; more than ``failure_limit`` failures: roll back at once (weight 0,
    canary ``failed`` in the registry); otherwise hold and analyse a fresh window;
  - ``insufficient-data`` / ``prometheus-unavailable`` (or the gateway cannot be driven):
    hold the weight and retry every tick; never a pass. Inconclusive for ``deadline_s`` in a
    row: roll back (the canary keeps its registry stage: it was not shown to be bad).

* ``promoting`` / ``rolling_back``: the decision was persisted before any side effect; the
  tick carries it out, checking each effect before repeating it: the registry's
  ``set_stage(canary, "production")`` only while the canary is not already production (a
  second call would push the previous model to ``archived``), the gateway's promote only
  while it does not already serve the canary as promoted; rollback calls are idempotent.
  Then the decision record is written (its file name is fixed by the decision) and the
  phase becomes ``promoted`` / ``rolled_back``. A controller killed anywhere in between
  finishes the same decision on restart: no double promotion, no lost rollback.

The gateway client and the clock come in through the constructor (tests pass fakes).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import Spec
from kubeloop.components.register import registry
from kubeloop.serving.rollout.analysis import Analysis, AnalysisResult
from kubeloop.serving.rollout.gateway_client import (
    GatewayAdmin,
    GatewayRefused,
    GatewayUnavailable,
    canary_model,
    canary_weight,
    stable_model,
)
from kubeloop.serving.rollout.prometheus import PrometheusClient, PrometheusUnavailable, QueryError
from kubeloop.serving.rollout.state import (
    DecisionRecord,
    Outcome,
    Pending,
    RolloutState,
    StageChange,
    StateStore,
    Trigger,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
GATEWAY_ERRORS = (GatewayUnavailable, GatewayRefused)


def utc_now() -> datetime:
    return datetime.now(UTC)


def poll_seconds(interval_s: float) -> float:
    """How often :meth:`Controller.run` ticks: a fraction of the interval, 0.2 .. 5 s."""
    return max(0.2, min(interval_s / 5, 5.0))


class Controller:
    """Drives one project's rollouts (``spec.rollouts_dir``) through the gateway's admin API
    and Prometheus."""

    def __init__(
        self,
        spec: Spec,
        *,
        gateway: GatewayAdmin,
        prometheus: PrometheusClient,
        clock: Clock = utc_now,
        store: StateStore | None = None,
    ) -> None:
        self.spec = spec
        self.gateway = gateway
        self.prometheus = prometheus
        self.clock = clock
        self.store = store or StateStore(spec.rollouts_dir)

    # ------------------------------------------------------------------ start

    def start(self, canary: str, *, stable: str | None = None) -> RolloutState:
        """Begin a rollout of `canary` (a registered candidate) against `stable` (default:
        the production model): canary loaded in the gateway, first step's weight set."""
        serve = self.spec.serve
        with self.store.locked():
            current = self.store.load()
            if current is not None and not current.terminal:
                raise KubeloopError(
                    f"rollout {current.rollout_id} of {current.canary} is {current.phase}: "
                    "wait for it, or end it with `kubeloop rollout abort` / `promote`"
                )
            canary_info = registry.get(canary)
            if canary_info.name != self.spec.name:
                raise KubeloopError(
                    f"canary {canary_info.tag} is a model of {canary_info.name!r}, "
                    f"not of this spec's {self.spec.name!r}"
                )
            if canary_info.stage != "candidate":
                raise KubeloopError(
                    f"canary {canary_info.tag} is in stage {canary_info.stage!r}; only a "
                    "candidate can be rolled out (see `kubeloop models list`)"
                )
            stable_info = registry.get(stable or f"{self.spec.name}:production")
            if stable_info.tag == canary_info.tag:
                raise KubeloopError(f"canary {canary_info.tag} is already the stable model")
            self._preflight(stable_info.tag, canary_info.tag)
            status = self._admin("load the canary", self.gateway.set_canary, canary_info.tag)
            served = stable_model(status)
            if served != stable_info.tag:
                self._admin("unload the canary", self.gateway.rollback)
                raise KubeloopError(
                    f"the gateway serves {served!r} as stable, but the rollout's stable model "
                    f"is {stable_info.tag}: restart the gateway on the production model "
                    "(`kubeloop serve`) or pass --stable"
                )
            now = self.clock()
            state = RolloutState(
                rollout_id=f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
                name=self.spec.name,
                stable=stable_info.tag,
                canary=canary_info.tag,
                serve=serve,
                weight=float(serve.canary_steps[0]),
                started_at=now,
                step_started_at=now,
                next_analysis_at=now + timedelta(seconds=serve.interval_s),
                updated_at=now,
            )
            self.store.save(state)
            logger.info("rollout %s: %s -> %s", state.rollout_id, state.stable, state.canary)
            try:
                self._reassert(state)
            except GATEWAY_ERRORS as err:  # the controller's ticks re-assert the weight
                state.last_error = str(err)
            self._save(state, now)
            return state

    def _preflight(self, stable: str, canary: str) -> None:
        """Run every query once: Prometheus must answer and accept each spec check."""
        result = Analysis(self.prometheus, self.spec.serve).run(
            stable=stable,
            canary=canary,
            window_s=self.spec.serve.interval_s,
            stable_window_s=self.spec.serve.interval_s,
            at=self.clock(),
        )
        if result.verdict == "prometheus-unavailable":
            raise KubeloopError(
                f"{result.reason}: a rollout is analysed through Prometheus, so it does not "
                "start without it (start Prometheus or set monitor.prometheus_url / --prometheus)"
            )
        refused = [c for c in result.checks if c.note.startswith("Prometheus refused")]
        if refused:
            raise KubeloopError(
                f"serve.analysis check {refused[0].name!r}: {refused[0].note}; fix its query"
            )

    def _admin(self, what: str, call: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        try:
            return call(*args)
        except GATEWAY_ERRORS as err:
            raise KubeloopError(f"could not {what}: {err}") from None

    # ------------------------------------------------------------------ reconcile

    def tick(self) -> RolloutState | None:
        """One reconcile step; returns the state after it (None: no rollout yet)."""
        with self.store.locked():
            state = self.store.load()
            if state is None or state.terminal:
                return state
            now = self.clock()
            if state.phase == "promoting":
                self._complete_promote(state, now)
            elif state.phase == "rolling_back":
                self._complete_rollback(state, now)
            else:
                self._progress(state, now)
            return state

    def run(
        self,
        *,
        until_done: bool = False,
        poll_s: float | None = None,
        on_tick: Callable[[RolloutState | None], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RolloutState | None:
        """Tick forever (a Deployment), or until the rollout ends (`until_done`). Errors of
        one tick are logged and retried on the next."""
        while not should_stop():
            state: RolloutState | None = None
            try:
                state = self.tick()
            except KubeloopError as err:
                logger.error("rollout tick failed (retrying): %s", err)
                state = self.store.load()
            if on_tick is not None:
                on_tick(state)
            if until_done and (state is None or state.terminal):
                return state
            interval = state.serve.interval_s if state else self.spec.serve.interval_s
            time.sleep(poll_s if poll_s is not None else poll_seconds(interval))
        return self.store.load()

    def _progress(self, state: RolloutState, now: datetime) -> None:
        try:
            self._reassert(state)
            state.last_error = None
        except GATEWAY_ERRORS as err:
            state.last_error = str(err)
            self._inconclusive(state, now, f"gateway cannot be driven: {err}")
            return
        if now < state.next_analysis_at:
            self._save(state, now)
            return
        interval = state.serve.interval_s
        # At 100 % stable serves nobody: its baseline is the whole rollout so far.
        baseline = interval if state.weight < 100 else (now - state.started_at).total_seconds()
        result = Analysis(self.prometheus, state.serve).run(
            stable=state.stable,
            canary=state.canary,
            window_s=interval,
            stable_window_s=max(interval, baseline),
            at=now,
        )
        state.add_analysis(result)
        logger.info(
            "rollout %s step %d/%d (%g%%): %s: %s",
            state.rollout_id,
            state.step + 1,
            len(state.steps),
            state.weight,
            result.verdict,
            result.reason,
        )
        if result.verdict == "pass":
            self._passed(state, now)
        elif result.verdict == "fail":
            self._failed(state, now, result)
        else:
            if result.verdict == "prometheus-unavailable":
                state.last_error = result.reason
            self._inconclusive(state, now, result.reason)

    def _passed(self, state: RolloutState, now: datetime) -> None:
        state.no_data_since = None
        if state.step == len(state.steps) - 1:
            self._decide(state, now, "promoted", "analysis", f"all {len(state.steps)} steps passed")
            self._complete_promote(state, now)
            return
        state.step += 1
        state.weight = float(state.steps[state.step])
        state.step_started_at = now
        state.next_analysis_at = now + timedelta(seconds=state.serve.interval_s)
        self._save(state, now)
        try:
            self._reassert(state)
        except GATEWAY_ERRORS as err:  # the next tick re-asserts
            state.last_error = str(err)
            self._save(state, now)

    def _failed(self, state: RolloutState, now: datetime, result: AnalysisResult) -> None:
        state.no_data_since = None
        state.failures += 1
        limit = state.serve.failure_limit
        if state.failures > limit:
            self._decide(
                state,
                now,
                "rolled_back",
                "analysis",
                f"{state.failures} failed analysis(es), limit {limit}: {result.reason}",
                mark_failed=True,
            )
            self._complete_rollback(state, now)
            return
        # Hold the weight; the next analysis looks at a fresh window.
        state.next_analysis_at = now + timedelta(seconds=state.serve.interval_s)
        self._save(state, now)

    def _inconclusive(self, state: RolloutState, now: datetime, reason: str) -> None:
        state.no_data_since = state.no_data_since or now
        waited = (now - state.no_data_since).total_seconds()
        if waited >= state.serve.deadline_s:
            self._decide(
                state,
                now,
                "rolled_back",
                "deadline",
                f"no conclusive analysis for {waited:.0f} s (deadline "
                f"{state.serve.deadline_s:g} s) at step {state.step + 1}: {reason}",
            )
            self._complete_rollback(state, now)
            return
        self._save(state, now)

    def _reassert(self, state: RolloutState) -> None:
        """The gateway serves the canary at the state's weight (converges after a restart)."""
        status = self.gateway.status()
        if canary_model(status) != state.canary:
            status = self.gateway.set_canary(state.canary)
        if canary_weight(status) != state.weight or status.get("phase") != "progressing":
            status = self.gateway.set_weights(state.weight, "progressing")
        served = stable_model(status)
        if served != state.stable:
            logger.warning(
                "gateway serves %s as stable, the rollout compares against %s", served, state.stable
            )

    # ------------------------------------------------------------------ decisions

    def promote_now(self, reason: str = "") -> RolloutState:
        """Skip the remaining steps and promote (``kubeloop rollout promote``)."""
        return self._manual("promoted", reason or "promoted by hand, skipping remaining steps")

    def abort(self, reason: str = "") -> RolloutState:
        """Roll back now (``kubeloop rollout abort``); the canary keeps its registry stage."""
        return self._manual("aborted", reason or "aborted by hand")

    def _manual(self, outcome: Outcome, reason: str) -> RolloutState:
        with self.store.locked():
            state = self.store.load()
            if state is None or state.terminal:
                raise KubeloopError(
                    "no rollout in progress"
                    + (f" (the last one, {state.rollout_id}, is {state.phase})" if state else "")
                )
            now = self.clock()
            if state.phase == "progressing":
                where = f" at step {state.step + 1}/{len(state.steps)} ({state.weight:g}%)"
                self._decide(state, now, outcome, "manual", reason + where)
            if state.phase == "promoting":
                self._complete_promote(state, now)
            else:
                self._complete_rollback(state, now)
            return state

    def _decide(
        self,
        state: RolloutState,
        now: datetime,
        outcome: Outcome,
        trigger: Trigger,
        reason: str,
        *,
        mark_failed: bool = False,
    ) -> None:
        """Persist the decision BEFORE acting on it (restart safety)."""
        state.pending = Pending(
            outcome=outcome,
            trigger=trigger,
            reason=reason,
            decided_at=now,
            mark_failed=mark_failed,
        )
        state.phase = "promoting" if outcome == "promoted" else "rolling_back"
        self._save(state, now)
        logger.warning("rollout %s: %s (%s): %s", state.rollout_id, outcome, trigger, reason)

    def _pending(self, state: RolloutState, now: datetime) -> Pending:
        if state.pending is None:  # a state edited by hand into this phase: complete it
            outcome: Outcome = "promoted" if state.phase == "promoting" else "rolled_back"
            state.pending = Pending(
                outcome=outcome, trigger="manual", reason=f"phase {state.phase}", decided_at=now
            )
        return state.pending

    def _complete_promote(self, state: RolloutState, now: datetime) -> None:
        pending = self._pending(state, now)
        canary_before = registry.get(state.canary).stage
        stable_before = registry.get(state.stable).stage
        if canary_before != "production":
            registry.set_stage(state.canary, "production")  # old production -> previous
        try:
            status = self.gateway.status()
            if not _promoted(status, state.canary):
                if canary_model(status) != state.canary:
                    self.gateway.set_canary(state.canary)
                status = self.gateway.promote()
        except GATEWAY_ERRORS as err:  # registry done; the gateway on the next tick
            state.last_error = f"promote: {err}"
            self._save(state, now)
            return
        changes = [
            StageChange(tag=state.canary, before=canary_before, after="production"),
            StageChange(
                tag=state.stable, before=stable_before, after=registry.get(state.stable).stage
            ),
        ]
        self._finish(state, pending, now, changes, status, weight=100.0, phase="promoted")

    def _complete_rollback(self, state: RolloutState, now: datetime) -> None:
        pending = self._pending(state, now)
        try:
            status = self.gateway.rollback()  # first: users off the canary at once
        except GATEWAY_ERRORS as err:
            state.last_error = f"rollback: {err}"
            self._save(state, now)
            return
        before = registry.get(state.canary).stage
        after = before
        if pending.mark_failed and before == "candidate":
            after = registry.set_stage(state.canary, "failed").stage
        changes = [StageChange(tag=state.canary, before=before, after=after)]
        self._finish(state, pending, now, changes, status, weight=0.0, phase="rolled_back")

    def _finish(
        self,
        state: RolloutState,
        pending: Pending,
        now: datetime,
        changes: list[StageChange],
        gateway_status: dict[str, Any],
        *,
        weight: float,
        phase: Any,
    ) -> None:
        record = DecisionRecord(
            rollout_id=state.rollout_id,
            outcome=pending.outcome,
            trigger=pending.trigger,
            reason=pending.reason,
            name=state.name,
            stable=state.stable,
            canary=state.canary,
            step=state.step + 1,
            steps=state.steps,
            weight=state.weight,
            failures=state.failures,
            failure_limit=state.serve.failure_limit,
            min_requests=state.serve.min_requests,
            interval_s=state.serve.interval_s,
            deadline_s=state.serve.deadline_s,
            registry=changes,
            gateway=gateway_status,
            analyses=state.analyses,
            started_at=state.started_at,
            decided_at=pending.decided_at,
            completed_at=now,
        )
        path = self.store.write_decision(pending, record)
        state.decision_file = str(path)
        state.weight = weight
        state.phase = phase
        state.last_error = None
        self._save(state, now)
        logger.warning("rollout %s %s; decision record %s", state.rollout_id, phase, path)

    def _save(self, state: RolloutState, now: datetime) -> None:
        state.updated_at = now
        self.store.save(state)


def _promoted(status: dict[str, Any], canary: str) -> bool:
    """Whether the gateway already serves `canary` as the promoted model (in-process: it is
    the stable slot; remote: the canary slot at 100 %)."""
    if status.get("phase") != "promoted":
        return False
    return stable_model(status) == canary or (
        canary_model(status) == canary and canary_weight(status) >= 100
    )


__all__ = ["Controller", "PrometheusUnavailable", "QueryError", "poll_seconds", "utc_now"]

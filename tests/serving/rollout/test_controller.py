"""The canary controller against a real Prometheus scraping a simulated gateway's metrics
(the real metric names, traffic routed by the weight the controller sets). The gateway's
admin API is the simulation, passed through the controller's constructor."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import Spec
from kubeloop.components.register import registry
from kubeloop.serving.rollout.controller import Controller
from kubeloop.serving.rollout.prometheus import PrometheusClient
from kubeloop.serving.rollout.state import RolloutState, StateStore
from tests.prom import PrometheusServer, free_port, prometheus_factory  # noqa: F401
from tests.serving.rollout.conftest import Models
from tests.serving.rollout.simulated import (
    CONSTANT,
    ERRORS,
    GOOD,
    SLOW,
    Behaviour,
    SimulatedGateway,
)

pytestmark = pytest.mark.xdist_group("rollout_prometheus")

RATE = 100.0  # simulated requests per second
RUN_LIMIT_S = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def simulate(models: Models) -> Iterator[Callable[..., SimulatedGateway]]:
    started: list[SimulatedGateway] = []

    def make(canary: Behaviour = GOOD, rate: float = RATE) -> SimulatedGateway:
        sim = SimulatedGateway(stable=models.stable, behaviours={models.canary: canary}, rate=rate)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.close()


@pytest.fixture
def world(
    simulate: Callable[..., SimulatedGateway],
    prometheus_factory: Callable[..., PrometheusServer],  # noqa: F811
) -> Callable[..., tuple[SimulatedGateway, PrometheusServer]]:
    def make(canary: Behaviour = GOOD, rate: float = RATE) -> tuple[SimulatedGateway, Any]:
        sim = simulate(canary, rate)
        prom = prometheus_factory([sim.target])
        prom.wait_for_targets()
        return sim, prom

    return make


def controller(spec: Spec, sim: SimulatedGateway, prom_url: str, **kw: Any) -> Controller:
    return Controller(spec, gateway=sim, prometheus=PrometheusClient(prom_url), **kw)


def drive(ctrl: Controller, until: Callable[[RolloutState | None], bool] | None = None) -> Any:
    """Run the real loop until the rollout ends (or `until` holds); fails on a hang."""
    deadline = time.monotonic() + RUN_LIMIT_S
    seen: list[RolloutState | None] = []

    def stop() -> bool:
        if until is not None and seen and until(seen[-1]):
            return True
        assert time.monotonic() < deadline, f"rollout did not end: {seen[-1] if seen else None}"
        return False

    state = ctrl.run(until_done=until is None, poll_s=0.2, on_tick=seen.append, should_stop=stop)
    return state, seen


def decisions(spec: Spec) -> list[Any]:
    return [record for _path, record in StateStore(spec.rollouts_dir).decisions()]


# ---------------------------------------------------------------------------- outcomes


def test_good_canary_walks_every_step_and_is_promoted(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD)
    spec = make_spec()
    ctrl = controller(spec, sim, prom.url)
    started = ctrl.start(models.canary)
    assert (started.phase, started.weight, sim.canary, sim.weight) == (
        "progressing",
        20.0,
        models.canary,
        20.0,
    )

    state, _seen = drive(ctrl)

    assert state.phase == "promoted", state.analyses[-1] if state.analyses else state
    assert sim.calls_of("set_weights") == [20.0, 50.0, 100.0]
    assert len(sim.calls_of("promote")) == 1 and sim.stable == models.canary
    assert registry.get(models.canary).stage == "production"
    assert registry.get(models.stable).stage == "previous"
    passes = [a for a in state.analyses if a.verdict == "pass"]
    assert len(passes) == 3
    for analysis in passes:
        checks = {c.name: c for c in analysis.checks}
        assert set(checks) == {
            "requests_stable",
            "requests_canary",
            "success_rate",
            "latency_p99_ratio",
            "prediction_psi",
        }
        assert all(c.passed and c.value is not None and c.query for c in checks.values())
    (record,) = decisions(spec)
    assert (record.outcome, record.trigger, record.step) == ("promoted", "analysis", 3)
    assert record.registry[0].after == "production" and record.registry[1].after == "previous"
    assert record.analyses[-1].checks[2].min == 0.99  # success_rate's threshold recorded


@pytest.mark.parametrize(
    ("behaviour", "failing_check"),
    [(ERRORS, "success_rate"), (SLOW, "latency_p99_ratio"), (CONSTANT, "prediction_psi")],
    ids=["errors", "slow", "constant"],
)
def test_broken_canary_is_rolled_back_at_its_first_failed_analysis(
    models: Models,
    world: Any,
    make_spec: Callable[..., Spec],
    behaviour: Behaviour,
    failing_check: str,
) -> None:
    sim, prom = world(behaviour)
    spec = make_spec()  # failure_limit 0: the first failed analysis rolls back
    ctrl = controller(spec, sim, prom.url)
    ctrl.start(models.canary)
    served_before = sim.requests

    state, _seen = drive(ctrl)

    assert state.phase == "rolled_back"
    assert (sim.canary, sim.weight) == (None, 0.0)
    assert sim.calls_of("set_weights") == [20.0]  # never widened
    assert registry.get(models.canary).stage == "failed"
    assert registry.get(models.stable).stage == "production"
    failed = state.analyses[-1]
    assert failed.verdict == "fail"
    assert [c.name for c in failed.failed()] == [failing_check]
    (record,) = decisions(spec)
    assert (record.outcome, record.trigger, record.failures) == ("rolled_back", "analysis", 1)
    assert record.registry[0].before == "candidate" and record.registry[0].after == "failed"
    # Stable kept answering throughout.
    time.sleep(0.3)
    assert sim.requests > served_before and sim.stable == models.stable
    if behaviour is ERRORS:
        # Failed user requests: bounded by canary weight x interval x rate (+ one more
        # interval of slack for scrape lag and the analysis itself).
        bound = 0.20 * (2 * spec.serve.interval_s) * RATE
        print(f"\nfailed user requests during the rollout: {sim.failed_requests} <= {bound:.0f}")
        assert 0 < sim.failed_requests <= bound


def test_failures_within_the_limit_hold_the_weight_then_roll_back(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(ERRORS)
    spec = make_spec(failure_limit=1)
    ctrl = controller(spec, sim, prom.url)
    ctrl.start(models.canary)
    state, seen = drive(ctrl)
    assert state.phase == "rolled_back" and state.failures == 2
    held = [s for s in seen if s and s.failures == 1 and s.phase == "progressing"]
    assert held and all(s.weight == 20.0 for s in held)
    assert [a.verdict for a in state.analyses].count("fail") == 2


def test_zero_traffic_holds_as_insufficient_data_then_rolls_back_at_the_deadline(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD, rate=0.0)
    spec = make_spec(interval_s=1.0, deadline_s=3.0)
    ctrl = controller(spec, sim, prom.url)
    ctrl.start(models.canary)

    state, seen = drive(ctrl)

    holds = [s for s in seen if s and s.phase == "progressing" and s.analyses]
    assert holds, "never analysed before the deadline"
    assert all(s.analyses[-1].verdict == "insufficient-data" for s in holds)
    assert all(s.step == 0 and s.weight == 20.0 for s in holds)
    assert "too little traffic" in holds[-1].analyses[-1].reason
    assert state.phase == "rolled_back" and not sim.calls_of("promote")
    assert registry.get(models.canary).stage == "candidate"  # not shown to be bad
    (record,) = decisions(spec)
    assert (record.outcome, record.trigger) == ("rolled_back", "deadline")
    assert "deadline" in record.reason


def test_prometheus_down_holds_and_never_promotes(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD)
    spec = make_spec()
    clock = FakeClock()
    ctrl = controller(spec, sim, prom.url, clock=clock)
    ctrl.start(models.canary)
    prom.stop()
    for _ in range(10):  # ten intervals pass (fake clock), every analysis unanswered
        clock.advance(spec.serve.interval_s)
        state = ctrl.tick()
        assert state is not None
        assert (state.phase, state.step, state.weight) == ("progressing", 0, 20.0)
        assert state.analyses[-1].verdict == "prometheus-unavailable"
        assert "unreachable" in (state.last_error or "")
    assert not sim.calls_of("promote") and not sim.calls_of("rollback")
    assert registry.get(models.canary).stage == "candidate"
    assert decisions(spec) == []


def test_start_refuses_without_prometheus_or_with_a_bad_check_query(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD)
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(KubeloopError, match="does not start without it"):
        controller(make_spec(), sim, closed).start(models.canary)
    bad = make_spec(analysis=[{"name": "custom", "query": "sum(rate(x[{window}]", "max": 1}])
    with pytest.raises(KubeloopError, match="check 'custom'"):
        controller(bad, sim, prom.url).start(models.canary)
    assert sim.calls_of("set_canary") == [] and not StateStore(bad.rollouts_dir).path.exists()


def test_start_checks_the_canary_and_refuses_a_second_rollout(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD)
    ctrl = controller(make_spec(), sim, prom.url)
    with pytest.raises(KubeloopError, match="only a candidate"):
        ctrl.start(models.stable)
    with pytest.raises(KubeloopError, match="not found"):
        ctrl.start("churn:nosuchversion")
    ctrl.start(models.canary)
    with pytest.raises(KubeloopError, match="abort"):
        ctrl.start(models.canary)


def test_custom_check_from_the_spec_is_queried_with_its_placeholders(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD)
    query = (
        'sum(increase(kubeloop_gateway_requests_total{model="{canary}",outcome="error"}'
        "[{window}])) or vector(0)"
    )
    spec = make_spec(
        canary_steps=[50, 100],
        analysis=[{"name": "canary_errors", "query": query, "max": 0}],
    )
    ctrl = controller(spec, sim, prom.url)
    ctrl.start(models.canary)
    state, _ = drive(ctrl)
    assert state.phase == "promoted"
    check = state.analyses[-1].checks[-1]
    assert check.name == "canary_errors" and check.value == 0.0
    assert f'model="{models.canary}"' in check.query and "[3s]" in check.query


# ---------------------------------------------------------------------------- restarts


def test_controller_killed_mid_rollout_resumes_and_the_gateway_converges(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD)
    spec = make_spec()
    first = controller(spec, sim, prom.url)
    first.start(models.canary)
    drive(first, until=lambda s: s is not None and s.step == 1)  # then "killed"
    sim.restart()  # and the gateway came back without its canary

    second = controller(spec, sim, prom.url)  # a new process: only the state dir is shared
    state, _ = drive(second)

    assert state.phase == "promoted"
    assert sim.calls_of("set_canary") == [models.canary, models.canary]
    assert 50.0 in sim.calls_of("set_weights")[2:]  # the weight re-asserted after restart
    assert len(sim.calls_of("promote")) == 1
    assert len(decisions(spec)) == 1


def test_promotion_interrupted_after_the_registry_completes_once_on_restart(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD)
    spec = make_spec(canary_steps=[50, 100])
    sim.down.add("promote")
    first = controller(spec, sim, prom.url)
    first.start(models.canary)
    drive(first, until=lambda s: s is not None and s.phase == "promoting")
    state = StateStore(spec.rollouts_dir).load()
    assert state is not None and state.phase == "promoting" and state.pending is not None
    assert registry.get(models.canary).stage == "production"  # done before the crash
    assert decisions(spec) == []

    sim.down.clear()
    state = controller(spec, sim, prom.url).tick()

    assert state is not None and state.phase == "promoted"
    # No double promotion: a second set_stage(production) would archive the previous model.
    assert registry.get(models.stable).stage == "previous"
    assert sim.stable == models.canary
    (record,) = decisions(spec)
    assert record.outcome == "promoted"
    assert controller(spec, sim, prom.url).tick() == state  # terminal: nothing more happens


def test_rollback_interrupted_at_the_gateway_is_not_lost(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(ERRORS)
    spec = make_spec()
    sim.down.add("rollback")
    first = controller(spec, sim, prom.url)
    first.start(models.canary)
    drive(first, until=lambda s: s is not None and s.phase == "rolling_back")
    state = StateStore(spec.rollouts_dir).load()
    assert state is not None and state.phase == "rolling_back"
    assert state.pending is not None and state.pending.mark_failed

    sim.down.clear()
    state = controller(spec, sim, prom.url).tick()

    assert state is not None and state.phase == "rolled_back"
    assert (sim.canary, sim.weight) == (None, 0.0)
    assert registry.get(models.canary).stage == "failed"
    assert len(decisions(spec)) == 1


def test_state_left_in_promoting_by_a_crash_before_any_effect_is_completed(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD)
    spec = make_spec()
    clock = FakeClock()
    ctrl = controller(spec, sim, prom.url, clock=clock)
    ctrl.start(models.canary)
    store = StateStore(spec.rollouts_dir)
    with store.locked():  # what _decide persisted just before the process died
        state = store.load()
        assert state is not None
        ctrl._decide(state, clock(), "promoted", "manual", "promoted by hand")
    state = controller(spec, sim, prom.url, clock=clock).tick()
    assert state is not None and state.phase == "promoted"
    assert registry.get(models.canary).stage == "production"
    assert registry.get(models.stable).stage == "previous"
    assert [r.trigger for r in decisions(spec)] == ["manual"]


def test_manual_abort_and_promote(
    models: Models, world: Any, make_spec: Callable[..., Spec]
) -> None:
    sim, prom = world(GOOD)
    spec = make_spec()
    ctrl = controller(spec, sim, prom.url)
    with pytest.raises(KubeloopError, match="no rollout in progress"):
        ctrl.abort()
    ctrl.start(models.canary)
    state = ctrl.abort("bad dashboard")
    assert state.phase == "rolled_back" and sim.canary is None
    assert registry.get(models.canary).stage == "candidate"
    ctrl.start(models.canary)
    state = ctrl.promote_now()
    assert state.phase == "promoted" and registry.get(models.canary).stage == "production"
    records = decisions(spec)
    assert [(r.outcome, r.trigger) for r in records] == [
        ("aborted", "manual"),
        ("promoted", "manual"),
    ]
    assert "bad dashboard at step 1/3" in records[0].reason

"""The trigger behind a real Alertmanager (generated config, 127.0.0.1, short timings): alerts
posted to Alertmanager's API reach the webhook; an alert storm starts exactly one run; the
cooldown and the daily budget hold; a restarted trigger repeats nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubeloop.components.core.spec import Spec
from kubeloop.serving.monitoring.config import Timings, write_local_configs
from kubeloop.serving.trigger.app import create_app
from kubeloop.serving.trigger.trigger import RetrainTrigger
from tests.alertmanager import AlertmanagerServer, UvicornThread, free_port, wait_for
from tests.trigger_fakes import (
    RecordingRollout,
    RecordingRunner,
    alert,
    make_spec,
    payload,
)

pytestmark = pytest.mark.xdist_group("alertmanager")

# Alertmanager re-sends a group every second while it changes and every 2 s while it
# does not, so repeats of the same notification arrive within seconds.
TIMINGS = Timings(group_wait_s=0.5, group_interval_s=1.0, repeat_interval_s=2.0)
WAIT_S = 60.0


@dataclass
class Loop:
    spec: Spec
    am: AlertmanagerServer
    port: int
    runner: RecordingRunner
    rollout: RecordingRollout

    @contextmanager
    def trigger(self) -> Iterator[RetrainTrigger]:
        trigger = RetrainTrigger(self.spec, self.runner, rollout=self.rollout, model_age=False)
        with UvicornThread(create_app(trigger), self.port):
            yield trigger

    def notifications(self, trigger: RetrainTrigger) -> dict[str, float]:
        out = {}
        for metric in trigger.registry.collect():
            if metric.name == "kubeloop_retrain_notifications":
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        out[s.labels["result"]] = s.value
        return out


@contextmanager
def _loop(tmp_path: Path, **retrain: Any) -> Iterator[Loop]:
    port = free_port()
    configs = write_local_configs(
        tmp_path / "monitoring",
        targets={"trigger": [f"127.0.0.1:{port}"]},
        trigger_url=f"http://127.0.0.1:{port}/alerts",
        timings=TIMINGS,
    )
    with AlertmanagerServer(tmp_path / "am", configs.alertmanager) as am:
        yield Loop(make_spec(tmp_path / "work", **retrain), am, port, RecordingRunner(),
                   RecordingRollout())  # fmt: skip


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    with _loop(tmp_path) as started:
        yield started


def drift(feature: str = "tenure_months", **labels: str) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": "ModelDriftDetected",
            "action": "retrain",
            "severity": "warning",
            "model": "churn:v1",
            "feature": feature,
            **labels,
        },
        "annotations": {"summary": "Input drift on churn:v1"},
        "generatorURL": "http://127.0.0.1:9090/graph",
    }


def stale() -> dict[str, Any]:
    return {"labels": {"alertname": "ModelStale", "action": "retrain", "model": "churn:v1"}}


def test_alert_storm_through_alertmanager_starts_exactly_one_run(loop: Loop) -> None:
    with loop.trigger() as trigger:
        # 100 copies of one alert and 20 more alerts of the same name, posted one by one
        # (as 120 Prometheus evaluations would) while Alertmanager keeps notifying.
        for i in range(120):
            loop.am.post_alerts([drift() if i < 100 else drift(feature=f"f{i}")])
        assert len(loop.am.alerts()) == 21  # Alertmanager's own dedupe: one per label set
        wait_for(
            lambda: sum(loop.notifications(trigger).values()) >= 5,
            WAIT_S,
            "five notifications from Alertmanager",
        )
        assert trigger.wait_idle(WAIT_S)
        got = loop.notifications(trigger)
        assert got["accepted"] == 1
        assert got["duplicate"] + got["cooldown"] >= 4
        assert len(loop.runner.runs) == 1
        assert loop.rollout.calls == ["churn:1"]
        # The run's alerts are the ones the notification carried, with their fingerprints.
        (request,) = trigger.state.requests
        assert {a.name for a in request.alerts} == {"ModelDriftDetected"}
        assert all(a.fingerprint for a in request.alerts)


def test_storm_of_150_identical_webhooks_over_http_starts_one_run(loop: Loop) -> None:
    """What Alertmanager HA replicas and repeat intervals send: the same notification many
    times, here 150 at once over HTTP."""
    body = payload(alert(fingerprint="5eed5eed5eed5eed"))

    async def storm() -> list[str]:
        url = f"http://127.0.0.1:{loop.port}/alerts"
        async with httpx.AsyncClient(timeout=30.0) as client:
            replies = await asyncio.gather(*(client.post(url, json=body) for _ in range(150)))
        return [r.json()["result"] for r in replies]

    with loop.trigger() as trigger:
        results = asyncio.run(storm())
        assert trigger.wait_idle(WAIT_S)
    assert results.count("accepted") == 1 and results.count("duplicate") == 149
    assert len(loop.runner.runs) == 1


def test_a_second_alert_within_the_cooldown_is_refused(loop: Loop) -> None:
    with loop.trigger() as trigger:
        loop.am.post_alerts([drift()])
        wait_for(lambda: loop.notifications(trigger)["accepted"] == 1, WAIT_S, "accepted")
        loop.am.post_alerts([stale()])  # another group: its own notification
        wait_for(lambda: loop.notifications(trigger)["cooldown"] >= 1, WAIT_S, "cooldown")
        assert trigger.wait_idle(WAIT_S)
        assert len(loop.runner.runs) == 1


def test_daily_budget_through_alertmanager(tmp_path: Path) -> None:
    with _loop(tmp_path, cooldown_s=0, daily_budget=1) as loop, loop.trigger() as trigger:
        loop.am.post_alerts([drift()])
        wait_for(lambda: loop.notifications(trigger)["accepted"] == 1, WAIT_S, "accepted")
        loop.am.post_alerts([stale()])
        wait_for(lambda: loop.notifications(trigger)["budget"] >= 1, WAIT_S, "budget")
        assert trigger.wait_idle(WAIT_S)
        assert len(loop.runner.runs) == 1


def test_restarted_trigger_repeats_nothing(loop: Loop) -> None:
    with loop.trigger() as first:
        loop.am.post_alerts([drift()])
        wait_for(lambda: loop.notifications(first)["accepted"] == 1, WAIT_S, "accepted")
        assert first.wait_idle(WAIT_S)
    assert len(loop.runner.runs) == 1

    # A new trigger object on the same state folder and port; Alertmanager keeps repeating.
    with loop.trigger() as second:
        wait_for(lambda: loop.notifications(second)["duplicate"] >= 2, WAIT_S, "repeats answered")
        assert loop.notifications(second)["accepted"] == 0
        assert second.wait_idle(WAIT_S)
    assert len(loop.runner.runs) == 1
    assert loop.rollout.calls == ["churn:1"]

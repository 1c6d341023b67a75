"""The generated local setup with real processes: Prometheus (generated prometheus.yml and the
packaged rules) scrapes a real retrain trigger, evaluates every rule without error, and
when a retraining run fails, RetrainingFailed fires and reaches the real Alertmanager
(generated alertmanager.yml), while the other retrain alert stays silent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from kubeloop.serving.monitoring.config import Timings, write_local_configs
from kubeloop.serving.monitoring.rules import all_rules
from kubeloop.serving.trigger.app import create_app
from kubeloop.serving.trigger.trigger import RetrainTrigger
from tests.alertmanager import (
    AlertmanagerServer,
    PrometheusServer,
    UvicornThread,
    free_port,
    wait_for,
)
from tests.trigger_fakes import RecordingRunner, make_spec, payload

pytestmark = pytest.mark.xdist_group("alertmanager")
WAIT_S = 60.0


def _query(prom: PrometheusServer, promql: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = prom.get("/api/v1/query", query=promql)["data"]["result"]
    return result


def _firing(prom: PrometheusServer) -> set[str]:
    alerts = prom.get("/api/v1/alerts")["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def test_generated_setup_evaluates_the_rules_and_delivers_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))  # an empty registry
    runner = RecordingRunner(status="failed")
    trigger = RetrainTrigger(make_spec(tmp_path / "work"), runner)
    port = free_port()
    folder = tmp_path / "monitoring"
    am = AlertmanagerServer(tmp_path / "am", folder / "alertmanager.yml")  # port chosen now
    configs = write_local_configs(
        folder,
        targets={"trigger": [f"127.0.0.1:{port}"]},
        trigger_url=f"http://127.0.0.1:{port}/alerts",
        alertmanager=f"127.0.0.1:{am.port}",
        scrape_interval_s=1,
        evaluation_interval_s=1,
        timings=Timings(group_wait_s=0.5, group_interval_s=1, repeat_interval_s=60),
    )
    with (
        UvicornThread(create_app(trigger), port),
        am,
        PrometheusServer(tmp_path / "prom", configs.prometheus) as prom,
    ):
        wait_for(
            lambda: _query(prom, 'kubeloop_retrain_runs_total{outcome="failed"}'),
            WAIT_S,
            "the trigger's counters scraped",
        )
        # Every packaged rule is loaded and evaluates without error.
        wait_for(
            lambda: all(
                r["health"] == "ok"
                for g in prom.get("/api/v1/rules")["data"]["groups"]
                for r in g["rules"]
            ),
            WAIT_S,
            "every rule evaluated",
        )
        groups = prom.get("/api/v1/rules")["data"]["groups"]
        assert sum(len(g["rules"]) for g in groups) == len(all_rules())
        assert _firing(prom) == set()

        reply = httpx.post(f"http://127.0.0.1:{port}/alerts", json=payload())
        assert reply.json()["result"] == "accepted"
        assert trigger.wait_idle(WAIT_S)
        wait_for(lambda: "RetrainingFailed" in _firing(prom), WAIT_S, "the alert")
        wait_for(
            lambda: any(a["labels"]["alertname"] == "RetrainingFailed" for a in am.alerts()),
            WAIT_S,
            "the alert in Alertmanager",
        )
        assert _firing(prom) == {"RetrainingFailed"}
        # Not a retrain alert: Alertmanager does not send it to the trigger.
        assert len(runner.runs) == 1

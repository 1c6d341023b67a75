"""Grafana cannot run here, so every panel of every dashboard the chart ships runs its query
against a real Prometheus scraping the real services on 127.0.0.1:

* the gateway (`kubeloop serve`, remote mode) in front of two `bentoml serve` ModelVariant
  services, stable and canary, with a filled online store (entity-id lookups) and
  `monitor.drift_window` 200;
* the retrain trigger's app (a recording pipeline runner and rollout starter) on uvicorn;
* Prometheus with the generated prometheus.yml and the packaged rules, scraping every 1 s.

Traffic makes every panel's data exist: rows to both variants at a 50 % canary weight,
shifted rows (drift), entity-id requests, labels posted to /feedback, and an Alertmanager
notification to the trigger (one recorded run). Each panel then has to run (Prometheus
accepts the query) and return at least one series, as an instant query and, for graphs,
over a range too. Panels over the /feedback metrics fail with a message saying so while
the gateway has no /feedback.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubeloop.components.register import registry
from kubeloop.serving.monitoring.config import write_local_configs
from kubeloop.serving.routing import route
from kubeloop.serving.trigger.app import create_app
from kubeloop.serving.trigger.trigger import RetrainTrigger
from tests import tiny_model
from tests.alertmanager import PrometheusServer, UvicornThread
from tests.k8s.dashboards import FEEDBACK_METRICS, load_dashboards, promql
from tests.serving_env import (
    ADMIN_TOKEN,
    admin,
    build_feature_store,
    feature_rows,
    free_port,
    gateway_cmd,
    load,
    register_two_versions,
    serve_env,
    variant_cmd,
    write_spec,
)
from tests.trigger_fakes import RecordingRollout, RecordingRunner, alert, make_spec, payload

pytestmark = pytest.mark.xdist_group("dashboards")

CANARY_PERCENT = 50
BATCH_ROWS = 100  # rows per drifted batch: two batches fill a 200-row window
DRIFT_WINDOW = 200
READY_S = 180.0
DATA_S = 30.0  # how long a panel may wait for its series (scrapes and rule evaluations)

DASHBOARDS = load_dashboards()
PANELS = [(name, p) for name, dash in DASHBOARDS.items() for p in dash["panels"]]


@dataclass
class Stack:
    prom: PrometheusServer
    gateway: str
    feedback: httpx.Response  # the gateway's answer to POST /feedback

    def query(self, expr: str, *, span_s: float | None = None) -> list[dict[str, Any]]:
        """Instant query, or a range query over the last `span_s` seconds; raises on an
        invalid query."""
        if span_s is None:
            path, params = "/api/v1/query", {"query": expr}
        else:
            now = time.time()
            path = "/api/v1/query_range"
            params = {"query": expr, "start": f"{now - span_s}", "end": f"{now}", "step": "2"}
        reply = httpx.get(f"{self.prom.url}{path}", params=params, timeout=10.0)
        body = reply.json()
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus refused {expr!r}: {body}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result


def own_home(env: dict[str, str], folder: Path) -> dict[str, str]:
    """`env` with a BENTOML_HOME of the process's own sharing the model store (`bentoml
    serve` empties its metrics folder there at start-up; see test_rollout_e2e.py)."""
    shared = Path(env["BENTOML_HOME"])
    folder.mkdir(parents=True)
    (folder / "models").symlink_to(shared / "models")
    (folder / registry.STAGES_FILE).symlink_to(shared / registry.STAGES_FILE)
    return {**env, "BENTOML_HOME": str(folder)}


@contextlib.contextmanager
def started(cmds: dict[str, tuple[list[str], int, dict[str, str]]], logs: Path) -> Iterator[None]:
    """Start every server at once (they start in parallel), wait until each /readyz is 200."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (cmd, _, env) in cmds.items():
            with (logs / f"{name}.log").open("wb") as out:
                procs[name] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_S
        for name, (_, port, _) in cmds.items():
            while True:
                if procs[name].poll() is not None or time.monotonic() > deadline:
                    log = (logs / f"{name}.log").read_text(errors="replace")[-4000:]
                    raise AssertionError(f"{name} did not become ready:\n{log}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.3)
        yield
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def request_ids(variant: str) -> Iterator[str]:
    """Request ids the gateway routes to `variant` at the canary weight used here."""
    i = 0
    while True:
        i += 1
        if route(f"{variant}-{i}", CANARY_PERCENT) == variant:
            yield f"{variant}-{i}"


def wait_for(what: str, predicate: Any, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.3)
    return value


def drive_traffic(stack: Stack, gateway: str) -> list[dict[str, Any]]:
    """Shifted rows to both variants until the stable window drifted; singles and entity-id
    batches on the way. Returns the labels of the answered rows (for /feedback)."""
    ids = {v: request_ids(v) for v in ("stable", "canary")}
    labels: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120.0
    seed = 100
    while True:
        for variant in ("stable", "canary"):
            seed += 1
            df = tiny_model.rows(BATCH_ROWS, seed=seed).assign(x=lambda d: d["x"] + 1.5)
            rid = next(ids[variant])
            body = {"rows": df[["x", "plan"]].to_dict("records"), "request_id": rid}
            reply = httpx.post(f"{gateway}/predict_batch", json=body, timeout=60)
            assert reply.status_code == 200, reply.text
            assert {p["variant"] for p in reply.json()["predictions"]} == {variant}
            labels += [{"request_id": rid, "row": i, "label": y} for i, y in enumerate(df["y"])]
            single = {"features": {"x": 0.3, "plan": "pro"}, "request_id": next(ids[variant])}
            assert httpx.post(f"{gateway}/predict", json=single, timeout=60).status_code == 200
        entities = {"entity_ids": list(range(10))}
        assert httpx.post(f"{gateway}/predict_batch", json=entities, timeout=60).status_code == 200
        drifted = stack.query('kubeloop_drift_window_drifted{variant="stable"} == 1')
        if drifted and stack.query('kubeloop_prediction_drift_psi{variant="stable"}'):
            return labels
        assert time.monotonic() < deadline, "the stable window never drifted"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("dashboards")
    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        mp.setenv("BENTOML_HOME", str(tmp / "bentoml"))  # the trigger reads model ages here
        mp.setenv("KUBELOOP_ADMIN_TOKEN", ADMIN_TOKEN)
        stable, canary = register_two_versions(tmp / "models")
        registry.set_stage(canary, "candidate")
        env = serve_env(str(tmp / "bentoml"))
        sp, cp, gp, tp = free_port(), free_port(), free_port(), free_port()
        spec_path = write_spec(
            tmp / "project",
            port=gp,
            stable_url=f"http://127.0.0.1:{sp}",
            canary_url=f"http://127.0.0.1:{cp}",
        )
        configs = write_local_configs(
            tmp / "monitoring",
            targets={
                "gateway": [f"127.0.0.1:{gp}"],
                "variants": [f"127.0.0.1:{sp}", f"127.0.0.1:{cp}"],
                "trigger": [f"127.0.0.1:{tp}"],
            },
            trigger_url=f"http://127.0.0.1:{tp}/alerts",
            alertmanager=f"127.0.0.1:{free_port()}",  # none: alerts stay in Prometheus
            scrape_interval_s=1,
            evaluation_interval_s=1,
        )
        prom = stack.enter_context(PrometheusServer(tmp / "prometheus", configs.prometheus))
        doc = yaml.safe_load(spec_path.read_text())
        doc["monitor"] = {"prometheus_url": prom.url, "drift_window": DRIFT_WINDOW}
        spec_path.write_text(yaml.safe_dump(doc))
        build_feature_store(load(spec_path), feature_rows())

        trigger = RetrainTrigger(
            make_spec(tmp / "trigger"), RecordingRunner(), rollout=RecordingRollout()
        )
        trigger_url = stack.enter_context(UvicornThread(create_app(trigger), tp)).url
        homes = {n: own_home(env, tmp / f"home-{n}") for n in ("stable", "canary", "gateway")}
        servers = {
            "stable": (variant_cmd(sp, stable), sp, homes["stable"]),
            "canary": (variant_cmd(cp, canary), cp, homes["canary"]),
            "gateway": (gateway_cmd(spec_path, gp, "--canary", canary), gp, homes["gateway"]),
        }
        stack.enter_context(started(servers, tmp))
        gateway = f"http://127.0.0.1:{gp}"
        wait_for(
            "the canary ready",
            lambda: (admin(gateway, "GET", "status").json()["canary"] or {}).get("ready"),
        )
        reply = admin(
            gateway, "POST", "weights", {"canary": CANARY_PERCENT, "phase": "progressing"}
        )
        assert reply.status_code == 200, reply.text

        # A notification as Alertmanager sends it: one accepted request, one recorded run.
        reply = httpx.post(f"{trigger_url}/alerts", json=payload(alert()), timeout=30)
        assert reply.json()["result"] == "accepted", reply.text
        assert trigger.wait_idle(60)

        partial = Stack(prom, gateway, httpx.Response(0))
        labels = drive_traffic(partial, gateway)
        feedback = httpx.post(f"{gateway}/feedback", json={"labels": labels}, timeout=60)
        yield Stack(prom, gateway, feedback)


def _feedback_missing(stack: Stack, expr: str) -> str | None:
    used = [n for n in FEEDBACK_METRICS if n in expr]
    if used and stack.feedback.status_code != 200:
        return (
            f"this panel needs the gateway's POST /feedback ({', '.join(used)}), which "
            f"answered {stack.feedback.status_code}: {stack.feedback.text[:300]}"
        )
    return None


@pytest.mark.parametrize(
    ("dashboard", "panel"), PANELS, ids=[f"{d}/{p['title']}" for d, p in PANELS]
)
def test_panel_query_runs_and_returns_data(
    stack: Stack, dashboard: str, panel: dict[str, Any]
) -> None:
    for target in panel["targets"]:
        expr = promql(target["expr"])
        stack.query(expr)  # Prometheus accepts it (raises with its error otherwise)
        if missing := _feedback_missing(stack, expr):
            pytest.fail(f"{dashboard} / {panel['title']}: {missing}")
        found = wait_for(f"{panel['title']}: {expr}", lambda e=expr: stack.query(e), DATA_S)
        values = [float(r["value"][1]) for r in found]
        assert any(math.isfinite(v) for v in values), f"{panel['title']}: {expr} -> {found}"
        if not target.get("instant"):  # graphs ask for a range
            assert stack.query(expr, span_s=60), f"{panel['title']}: no range data for {expr}"


def test_every_dashboard_is_checked() -> None:
    # Which dashboards exist is tests/k8s/test_dashboards.py's; here: all of them have panels.
    assert {name for name, _ in PANELS} == set(DASHBOARDS)
    assert len(PANELS) >= 50

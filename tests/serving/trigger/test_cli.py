"""`kubeloop trigger`: help, status, clear errors, and `serve` as a real process (uvicorn on
127.0.0.1) that answers webhooks and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from kubeloop.pipelines.cli.main import app
from tests.alertmanager import free_port, wait_for
from tests.trigger_fakes import alert, payload

pytestmark = pytest.mark.xdist_group("alertmanager")
cli = CliRunner()


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "kubeloop.yaml"
    path.write_text(
        yaml.safe_dump({"name": "churn", "data": {"source": "churn.csv", "label": "churned"}})
    )
    return path


def test_help_lists_the_commands() -> None:
    out = cli.invoke(app, ["trigger", "--help"])
    assert out.exit_code == 0
    assert "serve" in out.output and "status" in out.output
    serve_help = cli.invoke(app, ["trigger", "serve", "--help"])
    assert "/alerts" in serve_help.output
    for option in ("--kfp-host", "--gateway", "--prometheus"):
        assert option in serve_help.output


def test_status_of_a_fresh_project(spec_path: Path) -> None:
    out = cli.invoke(app, ["trigger", "status", "--spec", str(spec_path), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["requests"] == [] and data["policy"]["daily_budget"] == 3


def test_errors_name_the_file(spec_path: Path, tmp_path: Path) -> None:
    missing = cli.invoke(app, ["trigger", "status", "--spec", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "spec file not found" in missing.output
    state = tmp_path / ".kubeloop" / "trigger" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    for command in ("status", "serve"):
        out = cli.invoke(app, ["trigger", command, "--spec", str(spec_path)])
        assert out.exit_code == 1, out.output
        assert "state.json: not a valid trigger state file" in out.output


def test_serve_as_a_process(spec_path: Path, tmp_path: Path) -> None:
    port = free_port()
    launcher = "from kubeloop.pipelines.cli.main import app; app()"
    command = [sys.executable, "-c", launcher, "trigger", "serve", "--spec", str(spec_path)]
    log = (tmp_path / "trigger.log").open("wb")
    proc = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return proc.poll() is not None  # stop waiting: it exited

        wait_for(healthy, 60, "the trigger to answer /healthz")
        assert proc.poll() is None, (tmp_path / "trigger.log").read_text()
        bad = httpx.post(f"{url}/alerts", json={"version": "4"})
        assert bad.status_code == 400 and bad.json()["details"]
        resolved = httpx.post(f"{url}/alerts", json=payload(alert(status="resolved")))
        assert resolved.json() == {"result": "ignored", "request_id": None}
        metrics = httpx.get(f"{url}/metrics").text
        assert 'kubeloop_retrain_notifications_total{result="invalid"} 1.0' in metrics
        assert 'kubeloop_retrain_notifications_total{result="ignored"} 1.0' in metrics
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in (tmp_path / "trigger.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

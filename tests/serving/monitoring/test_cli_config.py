"""`kubeloop monitor config`, the README command: the files it writes pass promtool and
amtool, and the Prometheus command it prints starts a real Prometheus with kubeloop's rules
on the spec's monitor.prometheus_url."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import time
from pathlib import Path

import httpx
import yaml
from typer.testing import CliRunner

from kubeloop.pipelines.cli.main import app
from tests.serving_env import free_port

README_SPEC = ".kubeloop-demo/kubeloop.yaml"
README_COMMAND = f"kubeloop monitor config --spec {README_SPEC} --out .kubeloop-demo/monitoring"


def test_readme_command_writes_configs_that_start_prometheus(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert README_COMMAND in readme
    port = free_port()
    spec = tmp_path / README_SPEC
    spec.parent.mkdir()
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "churn",
                "data": {"source": "churn.csv", "label": "churned"},
                "serve": {"host": "0.0.0.0", "port": 3123},
                "monitor": {"prometheus_url": f"http://127.0.0.1:{port}"},
            }
        )
    )
    with contextlib.chdir(tmp_path):
        res = CliRunner().invoke(app, README_COMMAND.split()[1:])
    assert res.exit_code == 0, res.output
    out = tmp_path / ".kubeloop-demo" / "monitoring"
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == {"gateway": ["127.0.0.1:3123"], "trigger": ["127.0.0.1:9095"]}
    checked = subprocess.run(
        ["amtool", "check-config", str(out / "alertmanager.yml")], capture_output=True
    )
    assert checked.returncode == 0, checked.stderr

    # The printed Prometheus command, run as printed.
    line = next(ln for ln in res.output.splitlines() if ln.strip().startswith("prometheus "))
    proc = subprocess.Popen(shlex.split(line), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            with contextlib.suppress(httpx.TransportError):
                rules = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules", timeout=2)
                if rules.status_code == 200 and rules.json()["data"]["groups"]:
                    break
            assert time.monotonic() < deadline, "Prometheus did not load the rules in 30 s"
            time.sleep(0.3)
        names = {r["name"] for g in rules.json()["data"]["groups"] for r in g["rules"]}
        assert "ModelDriftDetected" in names and "CanaryRolledBack" in names
    finally:
        proc.terminate()
        proc.wait(10)

"""The rendered PrometheusRule under `promtool`: it passes `check rules`, the packaged rules'
own unit tests (tests/serving/monitoring/rules_test.yaml) pass against the rendered copy, and
the chart's own alert fires on a series that breaks it and stays silent otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.chart import CI_DIR, REPO, load_values, render

pytestmark = pytest.mark.xdist_group("k8s")

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PACKAGED_TESTS = REPO / "tests" / "serving" / "monitoring" / "rules_test.yaml"
RUNBOOK = "https://github.com/kubeloop/kubeloop/blob/main/helm/README.md#"


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PrometheusRule's spec as a plain Prometheus rules file."""
    r = render(load_values(CI_DIR / "monitoring-values.yaml"))
    spec: dict[str, Any] = r.get("PrometheusRule", "kubeloop")["spec"]
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, check=False, cwd=cwd
    )


def test_promtool_accepts_the_rendered_rules(rule_file: Path) -> None:
    out = _promtool("check", "rules", rule_file)
    assert out.returncode == 0, out.stdout + out.stderr


def test_packaged_rule_tests_pass_on_the_rendered_rules(rule_file: Path, tmp_path: Path) -> None:
    """Rendering kept every expression and annotation template ({{ $labels }}) intact."""
    tests = yaml.safe_load(PACKAGED_TESTS.read_text())
    tests["rule_files"] = [str(rule_file)]
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    out = _promtool("test", "rules", test_file, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def _variant_down_case() -> dict[str, Any]:
    down = "KubeloopVariantDown"
    return {
        "interval": "1m",
        "input_series": [
            {"series": 'up{job="kubeloop-canary",instance="10.0.0.7:3000"}', "values": "0x15"},
            {"series": 'up{job="kubeloop-stable",instance="10.0.0.8:3000"}', "values": "1x15"},
            {"series": 'up{job="other-app",instance="10.0.0.9:3000"}', "values": "0x15"},
        ],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": down, "exp_alerts": []},  # pending
            {
                "eval_time": "10m",
                "alertname": down,
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "critical",
                            "job": "kubeloop-canary",
                            "instance": "10.0.0.7:3000",
                        },
                        "exp_annotations": {
                            "summary": "A kubeloop model variant cannot be scraped.",
                            "description": "kubeloop-canary target 10.0.0.7:3000 has been down "
                            "for 5 minutes.",
                            "runbook_url": RUNBOOK + down.lower(),
                        },
                    }
                ],
            },
        ],
    }


def test_variant_down_fires_for_this_release_only(rule_file: Path, tmp_path: Path) -> None:
    test_file = tmp_path / "chart_rules_test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rule_file)],
                "evaluation_interval": "1m",
                "tests": [_variant_down_case()],
            },
            sort_keys=False,
        )
    )
    out = _promtool("test", "rules", test_file, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_readme_alertmanager_route_sends_retrain_alerts_to_the_trigger(tmp_path: Path) -> None:
    """The helm/README.md snippet, completed with a default receiver, routes `action=retrain`
    alerts (and only those) to the trigger's webhook."""
    from kubeloop.serving.monitoring.rules import retrain_alert_names

    text = (REPO / "helm" / "README.md").read_text()
    start = text.index("```yaml\n", text.index("route them to its webhook")) + 8
    config = yaml.safe_load(text[start : text.index("```", start)])
    config["route"]["receiver"] = "default"
    config["receivers"].append({"name": "default"})
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    amtool = shutil.which("amtool") or "/usr/bin/amtool"

    def route(*labels: str) -> str:
        out = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={path}", *labels],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout.strip()

    check = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert retrain_alert_names()
    for alert in retrain_alert_names():
        assert route(f"alertname={alert}", "action=retrain") == "kubeloop-retrain"
    assert route("alertname=GatewayHighErrorRate", "severity=critical") == "default"
    trigger_url = config["receivers"][0]["webhook_configs"][0]["url"]
    assert trigger_url == "http://kubeloop-trigger.kubeloop.svc:9095/alerts"

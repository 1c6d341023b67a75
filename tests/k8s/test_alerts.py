"""The chart's alert rules under `promtool test rules`: each alert fires on a series that
breaks it and stays silent on one that does not (thresholds from ci/monitoring-values.yaml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.chart import CI_DIR, load_values, render

pytestmark = pytest.mark.xdist_group("k8s")

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
GATEWAY = 'job="kubeloop-gateway"'
RUNBOOK = "https://github.com/kubeloop/kubeloop/blob/main/helm/README.md#"


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    r = render(load_values(CI_DIR / "monitoring-values.yaml"))
    spec: dict[str, Any] = r.get("PrometheusRule", "kubeloop")["spec"]
    return spec


def _requests(outcome: str, per_minute: int) -> dict[str, str]:
    labels = f'{GATEWAY},variant="stable",model="churn:1",outcome="{outcome}"'
    return {
        "series": f"kubeloop_gateway_requests_total{{{labels}}}",
        "values": f"0+{per_minute}x30",
    }


def _latency(le: str, per_minute: int) -> dict[str, str]:
    labels = f'{GATEWAY},variant="stable",model="churn:1",le="{le}"'
    return {
        "series": f"kubeloop_gateway_request_latency_seconds_bucket{{{labels}}}",
        "values": f"0+{per_minute}x30",
    }


def _alert(name: str, eval_time: str, expected: list[dict[str, Any]]) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": name, "exp_alerts": expected}


def _cases(rules: dict[str, Any]) -> list[dict[str, Any]]:
    def annotations(alert: str, description: str) -> dict[str, str]:
        rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert)
        return {
            "summary": rule["annotations"]["summary"],
            "description": description,
            "runbook_url": RUNBOOK + alert.lower(),
        }

    error_rate = "KubeloopGatewayHighErrorRate"
    latency = "KubeloopGatewayHighLatency"
    dropping = "KubeloopPredictionLogDropping"
    down = "KubeloopVariantDown"
    return [
        {  # 10 % errors > 2 %: fires after `for: 5m`
            "interval": "1m",
            "input_series": [_requests("ok", 90), _requests("error", 10)],
            "alert_rule_test": [
                _alert(error_rate, "4m", []),  # pending, not firing yet
                _alert(
                    error_rate,
                    "15m",
                    [
                        {
                            "exp_labels": {"severity": "critical", "job": "kubeloop-gateway"},
                            "exp_annotations": annotations(
                                error_rate,
                                "10% of gateway requests failed or found no ready model over the "
                                "last 5 minutes (job kubeloop-gateway).",
                            ),
                        }
                    ],
                ),
            ],
        },
        {  # 1 % errors, 1 % invalid input (a 4xx is the caller's fault): silent
            "interval": "1m",
            "input_series": [
                _requests("ok", 98),
                _requests("error", 1),
                _requests("invalid", 1),
            ],
            "alert_rule_test": [_alert(error_rate, "20m", [])],
        },
        {  # every answer between 0.5 s and 1 s: p99 = 0.995 s > 0.5 s
            "interval": "1m",
            "input_series": [
                _latency("0.5", 0),
                _latency("1", 100),
                _latency("+Inf", 100),
            ],
            "alert_rule_test": [
                _alert(
                    latency,
                    "20m",
                    [
                        {
                            "exp_labels": {"severity": "warning", "job": "kubeloop-gateway"},
                            "exp_annotations": annotations(
                                latency,
                                "p99 latency of answered gateway requests is 995ms over the "
                                "last 5 minutes.",
                            ),
                        }
                    ],
                )
            ],
        },
        {  # every answer under 0.1 s: silent
            "interval": "1m",
            "input_series": [_latency("0.1", 100), _latency("1", 100), _latency("+Inf", 100)],
            "alert_rule_test": [_alert(latency, "20m", [])],
        },
        {  # dropped records: fires at once; a flat counter: silent
            "interval": "1m",
            "input_series": [
                {
                    "series": f"kubeloop_gateway_prediction_log_dropped_total{{{GATEWAY}}}",
                    "values": "0 0 0 0 0 0 0 0 0 0 50 50 50 50 50 50 50 50 50 50 50 50 50 50 50",
                }
            ],
            "alert_rule_test": [
                _alert(dropping, "9m", []),
                _alert(
                    dropping,
                    "12m",
                    [
                        {
                            "exp_labels": {"severity": "warning", "job": "kubeloop-gateway"},
                            "exp_annotations": annotations(
                                dropping,
                                "Prediction log records were dropped in the last 10 minutes; the "
                                "writer cannot keep up, so drift checks and label joins miss rows.",
                            ),
                        }
                    ],
                ),
                _alert(dropping, "24m", []),
            ],
        },
        {  # the canary target down 10 minutes fires; the stable one up stays silent
            "interval": "1m",
            "input_series": [
                {"series": 'up{job="kubeloop-canary",instance="10.0.0.7:3000"}', "values": "0x15"},
                {"series": 'up{job="kubeloop-stable",instance="10.0.0.8:3000"}', "values": "1x15"},
                {"series": 'up{job="other-app",instance="10.0.0.9:3000"}', "values": "0x15"},
            ],
            "alert_rule_test": [
                _alert(
                    down,
                    "10m",
                    [
                        {
                            "exp_labels": {
                                "severity": "critical",
                                "job": "kubeloop-canary",
                                "instance": "10.0.0.7:3000",
                            },
                            "exp_annotations": annotations(
                                down,
                                "kubeloop-canary target 10.0.0.7:3000 has been down for 5 minutes.",
                            ),
                        }
                    ],
                )
            ],
        },
    ]


def test_promtool_checks_and_tests_the_rules(rules: dict[str, Any], tmp_path: Path) -> None:
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    check = subprocess.run(
        [PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": _cases(rules)},
            sort_keys=False,
        )
    )
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_promtool_case(rules: dict[str, Any]) -> None:
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tested = {t["alertname"] for case in _cases(rules) for t in case["alert_rule_test"]}
    fired = {
        t["alertname"] for case in _cases(rules) for t in case["alert_rule_test"] if t["exp_alerts"]
    }
    assert alerts == tested == fired

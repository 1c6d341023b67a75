"""The local Prometheus and Alertmanager configs: accepted by promtool and amtool, routed as
intended (checked by amtool's own route tester), and refused cleanly when given bad input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from kubeloop.components.core.errors import KubeloopError
from kubeloop.serving.monitoring.config import (
    HEADER,
    Timings,
    alertmanager_config,
    write_local_configs,
)
from kubeloop.serving.monitoring.rules import RULES_FILE, retrain_alert_names

TARGETS = {"gateway": ["127.0.0.1:3000"], "trigger": ["127.0.0.1:9095"]}
TRIGGER = "http://127.0.0.1:9095/alerts"


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=60)


def _route(config: Path, *labels: str) -> set[str]:
    out = _run("amtool", "config", "routes", "test", f"--config.file={config}", *labels)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.strip().split(","))


def test_written_configs_pass_promtool_and_amtool(tmp_path: Path) -> None:
    paths = write_local_configs(tmp_path, targets=TARGETS, trigger_url=TRIGGER)
    assert paths.rules.read_text() == RULES_FILE.read_text()
    for path in (paths.prometheus, paths.alertmanager):
        assert path.read_text().startswith(HEADER)
    prom = _run("promtool", "check", "config", paths.prometheus)
    assert prom.returncode == 0, prom.stdout + prom.stderr
    assert "SUCCESS: 1 rule files found" in prom.stdout  # and promtool checked the rules too
    am = _run("amtool", "check-config", paths.alertmanager)
    assert am.returncode == 0, am.stdout + am.stderr

    config = yaml.safe_load(paths.prometheus.read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == TARGETS
    assert config["rule_files"] == [str(paths.rules)]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:9093"
    ]


def test_retrain_alerts_route_to_the_trigger_and_others_do_not(tmp_path: Path) -> None:
    paths = write_local_configs(tmp_path, targets=TARGETS, trigger_url=TRIGGER)
    for name in retrain_alert_names():
        assert _route(paths.alertmanager, f"alertname={name}", "action=retrain") == {
            "kubeloop-retrain-trigger"
        }
    assert _route(paths.alertmanager, "alertname=GatewayHighLatency") == {"null"}

    with_notify = write_local_configs(
        tmp_path / "n", targets=TARGETS, trigger_url=TRIGGER, notify_url="http://127.0.0.1:1/x"
    )
    assert _route(with_notify.alertmanager, "alertname=ModelStale", "action=retrain") == {
        "kubeloop-retrain-trigger",
        "kubeloop-notify",
    }
    assert _route(with_notify.alertmanager, "alertname=CanaryFailed") == {"kubeloop-notify"}


def test_grouping_and_timings() -> None:
    route = alertmanager_config(trigger_url=TRIGGER, timings=Timings(1, 2.5, 600))["route"]
    assert route["group_by"] == ["alertname"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "1s",
        "2500ms",
        "600s",
    )
    defaults = alertmanager_config(trigger_url=TRIGGER)["route"]
    assert (defaults["group_wait"], defaults["repeat_interval"]) == ("30s", "14400s")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": {"gateway": ["localhost"]}}, "targets must be host:port"),
        ({"targets": {"bad job": ["127.0.0.1:1"]}}, "scrape job 'bad job'"),
        ({"trigger_url": "127.0.0.1:9095/alerts"}, "trigger_url: expected an http(s) URL"),
        ({"notify_url": "ftp://x"}, "notify_url: expected an http(s) URL"),
        ({"alertmanager": "http://127.0.0.1:9093"}, "targets must be host:port"),
        ({"scrape_interval_s": 0}, "scrape_interval_s: must be a positive"),
        ({"timings": Timings(group_wait_s=-1)}, "group_wait_s: must be a positive"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"targets": TARGETS, "trigger_url": TRIGGER, **kwargs}
    with pytest.raises(KubeloopError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_local_configs(tmp_path / "out", **args)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()

"""The packaged rules: promtool accepts them, every alert is complete and has promtool cases
that fire and that stay silent, and every metric they select is defined in the package."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.serving.monitoring.catalog import exposed_names, metric_families
from kubeloop.serving.monitoring.rules import (
    RULES_FILE,
    RUNBOOK_FILE,
    alert_rules,
    all_rules,
    recording_rules,
    retrain_alert_names,
    selected_metric_names,
)

HERE = Path(__file__).parent
TEST_FILES = sorted(HERE.glob("*_test.yaml"))
PROMTOOL = "/usr/bin/promtool"
RUNBOOK_BASE = "https://github.com/kubeloop/kubeloop/blob/main/serving/monitoring/README.md#"


def _promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert shutil.which(PROMTOOL), "promtool missing: apt-get install -y prometheus"
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_promtool_check_rules() -> None:
    out = _promtool("check", "rules", RULES_FILE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    assert TEST_FILES
    out = _promtool("test", "rules", *TEST_FILES)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The cases pin the rules: the same tests against a rules file whose error-rate
    threshold moved from 5 % to 50 % fail."""
    changed = RULES_FILE.read_text().replace("ratio_rate5m > 0.05", "ratio_rate5m > 0.5")
    assert changed != RULES_FILE.read_text()
    (tmp_path / "rules.yaml").write_text(changed)
    tests = yaml.safe_load(TEST_FILES[0].read_text())
    tests["rule_files"] = [str(tmp_path / "rules.yaml")]
    (tmp_path / "t_test.yaml").write_text(yaml.safe_dump(tests))
    out = _promtool("test", "rules", tmp_path / "t_test.yaml")
    assert out.returncode != 0
    assert "GatewayHighErrorRate" in out.stdout + out.stderr


def _cases() -> dict[str, dict[str, int]]:
    """Per alert name: how many promtool cases expect it firing / silent."""
    counts: dict[str, dict[str, int]] = {}
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "silent"
                slot = counts.setdefault(case["alertname"], {"fires": 0, "silent": 0})
                slot[kind] += 1
    return counts


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    counts = _cases()
    for rule in alert_rules():
        got = counts.get(rule["alert"], {"fires": 0, "silent": 0})
        assert got["fires"] >= 1 and got["silent"] >= 1, (rule["alert"], got)
    assert set(counts) <= {r["alert"] for r in alert_rules()}, "cases for unknown alerts"


def _headings() -> set[str]:
    """GitHub's anchors for the runbook README's headings."""
    titles = re.findall(r"^#+\s+(.+)$", RUNBOOK_FILE.read_text(), re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", t.lower()).replace(" ", "-") for t in titles}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_is_complete(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    notes = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert notes.get(key, "").strip(), key
    url = notes["runbook_url"]
    assert url.startswith(RUNBOOK_BASE), url
    assert url.removeprefix(RUNBOOK_BASE) == rule["alert"].lower()
    assert url.removeprefix(RUNBOOK_BASE) in _headings(), f"no README section for {url}"


def test_names_are_unique_and_follow_conventions() -> None:
    alerts = [r["alert"] for r in alert_rules()]
    records = [r["record"] for r in recording_rules()]
    assert len(set(alerts)) == len(alerts) and len(set(records)) == len(records)
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]+", a) for a in alerts)
    # level:metric:operations (the Prometheus naming convention for recording rules).
    assert all(re.fullmatch(r"[a-z_]+:kubeloop_[a-z0-9_]+:[a-z0-9_]+", r) for r in records)
    assert set(retrain_alert_names()) == {
        "ModelDriftDetected",
        "PredictionDriftDetected",
        "ModelStale",
    }


def test_every_metric_the_rules_select_is_defined_in_the_package() -> None:
    defined = exposed_names(metric_families()) | {r["record"] for r in recording_rules()}
    used = {name for rule in all_rules() for name in selected_metric_names(rule["expr"])}
    assert used, "no metric names found in the rules"
    assert sorted(used - defined) == []


def test_every_metric_the_unit_tests_feed_is_defined_in_the_package() -> None:
    """The promtool cases must feed the series the services really export."""
    defined = exposed_names(metric_families())
    fed = {
        re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s["series"].strip())[0]  # type: ignore[index]
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for s in test["input_series"]
    }
    assert sorted(fed - defined) == []


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (variant, model) (rate(a_total{outcome=~"x|y"}[5m]))', {"a_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(b_bucket[5m:1m])))", {"b_bucket"}),
        ("x:y:rate5m / on (variant) group_left (model) z offset 5m > 1e3", {"x:y:rate5m", "z"}),
        ("time() - max without (pod) (c) > 30 * 86400 and d unless bool e", {"c", "d", "e"}),
        ('{__name__="f", job="by"}', {"f"}),
        ('sum(g) by (variant) or label_replace(h, "dst", "$1", "src", "(.*)")', {"g", "h"}),
    ],
)
def test_selected_metric_names(expr: str, names: set[str]) -> None:
    assert selected_metric_names(expr) == names

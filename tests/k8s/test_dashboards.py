"""The chart's Grafana dashboards, statically: they parse, follow the shared conventions,
select only metrics the package defines, and each becomes one labelled ConfigMap. (Their
queries run against a real Prometheus in tests/serving/monitoring/test_dashboards.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from kubeloop.serving.monitoring.catalog import exposed_names, metric_families
from tests.k8s.chart import CI_DIR, load_values, render
from tests.k8s.dashboards import DASHBOARDS_DIR, dashboard_files, load_dashboards, promql

pytestmark = pytest.mark.xdist_group("k8s")

DASHBOARDS = load_dashboards()
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "state-timeline"}
# A selector of a kubeloop series: the name and its {matchers}, if any.
_SELECTOR = re.compile(r"(?<![\w:])(kubeloop_\w+)(\{[^}]*\})?")


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, p) for name, d in DASHBOARDS.items() for p in d["panels"]]


def test_the_five_dashboards_are_checked_in_and_up_to_date() -> None:
    assert set(DASHBOARDS) == {
        "kubeloop-overview",
        "kubeloop-gateway",
        "kubeloop-quality-drift",
        "kubeloop-rollouts",
        "kubeloop-pipeline-runs",
    }
    stale = [p.name for p, text in dashboard_files().items() if p.read_text() != text]
    assert stale == [], "run: python -m tests.k8s.generate"


def test_uids_titles_and_variables() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)
    for name, d in DASHBOARDS.items():
        assert d["uid"] == name and len(d["uid"]) <= 40  # Grafana's uid limit
        assert "kubeloop" in d["tags"] and d["schemaVersion"] >= 39
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["namespace"]["allValue"] == ".*"


def test_every_panel_is_complete() -> None:
    for name, d in DASHBOARDS.items():
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), name
        titles = [p["title"] for p in d["panels"]]
        assert len(set(titles)) == len(titles), name
        for p in d["panels"]:
            where = f"{name} / {p.get('title')}"
            assert p["title"] and p["description"], where
            assert p["type"] in PANEL_TYPES, where
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert p["fieldConfig"]["defaults"]["unit"], where
            grid = p["gridPos"]
            assert grid["x"] + grid["w"] <= 24, where
            assert p["targets"], where
            refs = [t["refId"] for t in p["targets"]]
            assert len(set(refs)) == len(refs), where
            for t in p["targets"]:
                assert t["expr"] and t["datasource"] == p["datasource"], where
                promql(t["expr"])  # no variable a test could not substitute


def test_panels_never_overlap() -> None:
    for name, d in DASHBOARDS.items():
        cells: set[tuple[int, int]] = set()
        for p in d["panels"]:
            g = p["gridPos"]
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, f"{name} / {p['title']}"
            cells |= mine


def test_every_series_is_selected_in_the_dashboard_namespace() -> None:
    for name, p in _panels():
        for t in p["targets"]:
            for metric, matchers in _SELECTOR.findall(t["expr"]):
                assert 'namespace=~"$namespace"' in matchers, f"{name} / {p['title']}: {metric}"


def test_dashboards_select_only_metrics_the_package_defines() -> None:
    """Exact sample names (``_total``, ``_bucket`` ...) against what prometheus_client
    exposes for the package's metric objects (kubeloop.serving.monitoring.catalog)."""
    exposed = exposed_names(metric_families(missing_ok=False))
    used = {
        metric
        for _, p in _panels()
        for t in p["targets"]
        for metric, _ in _SELECTOR.findall(t["expr"])
    }
    assert used and used <= exposed, sorted(used - exposed)


def test_the_chart_renders_one_labelled_configmap_per_dashboard() -> None:
    values = load_values(CI_DIR / "monitoring-values.yaml")
    rendered = render(values).objects
    maps = [o for o in rendered if "grafana_dashboard" in o["metadata"].get("labels", {})]
    files = sorted(p.name for p in DASHBOARDS_DIR.glob("*.json"))
    assert sorted(k for o in maps for k in o["data"]) == files
    assert all(len(o["data"]) == 1 for o in maps)
    for o in maps:
        assert o["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert o["metadata"]["annotations"]["grafana_folder"] == values["dashboards"]["folder"]
        ((key, text),) = o["data"].items()
        assert json.loads(text) == DASHBOARDS[key.removesuffix(".json")]
    defaults = render(load_values(CI_DIR / "default-values.yaml")).objects
    assert not [o for o in defaults if "grafana_dashboard" in o["metadata"].get("labels", {})]


def test_readme_import_example_builds_grafana_api_payloads() -> None:
    """README's by-hand import: its jq filter, run on every dashboard, makes the body of
    Grafana's POST /api/dashboards/db (no Grafana here to send it to)."""
    text = (DASHBOARDS_DIR.parents[2] / "README.md").read_text()
    section = text[text.index("### Dashboards") :]
    block = section[
        section.index("```bash\n") + 8 : section.index("```", section.index("```bash\n") + 8)
    ]
    assert "helm/kubeloop/dashboards/*.json" in block and "/api/dashboards/db" in block
    (jq_filter,) = re.findall(r"jq '([^']+)'", block)
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    for name, dashboard in DASHBOARDS.items():
        path = DASHBOARDS_DIR / f"{name}.json"
        out = subprocess.run(["jq", jq_filter, str(path)], capture_output=True, check=True)
        body = json.loads(out.stdout)
        assert body == {"dashboard": dashboard, "overwrite": True}

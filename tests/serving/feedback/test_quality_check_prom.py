"""live_quality_delta against a real Prometheus scraping a real gateway (`kubeloop serve`,
models in the gateway, canary at 50 %): labels sent through POST /feedback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubeloop.components.core.spec import Spec
from kubeloop.serving.metrics import GATEWAY_FEEDBACK_LABELS_TOTAL
from kubeloop.serving.rollout.analysis import Analysis
from kubeloop.serving.rollout.prometheus import PrometheusClient
from tests.prom import PrometheusServer
from tests.serving_env import admin, free_port, gateway_cmd, serve_env, served

pytestmark = pytest.mark.xdist_group("feedback_prom")

ROW = {"x": 0.3, "plan": "pro"}
FLIP = {"yes": "no", "no": "yes"}


@pytest.fixture
def world(
    make_spec: Callable[..., Spec], models: dict[str, Any], tmp_path: Path
) -> Iterator[dict[str, Any]]:
    port = free_port()
    check = {"name": "live_quality_delta", "min": -0.02}
    spec = make_spec(port=port, min_requests=5, min_labels=10, analysis=[check])
    path = tmp_path / "project" / "kubeloop.yaml"
    env = serve_env(str(models["home"]))
    cmd = gateway_cmd(path, port, "--canary", models["canary"])
    with (
        PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{port}"]) as prom,
        served(cmd, port, env, tmp_path / "gateway.log") as base,
    ):
        assert admin(base, "POST", "weights", {"canary": 50}).status_code == 200
        yield {"spec": spec, "base": base, "prom": prom, **models}


def test_live_quality_delta_fails_a_worse_canary_and_waits_for_labels(
    world: dict[str, Any],
) -> None:
    base, prom, spec = world["base"], world["prom"], world["spec"]
    served_rows: dict[str, list[tuple[str, str]]] = {"stable": [], "canary": []}
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(80):
            body = http.post("/predict", json={"features": ROW, "request_id": f"q{i}"}).json()
            served_rows[body["variant"]].append((body["request_id"], body["prediction"]))
        assert min(len(v) for v in served_rows.values()) >= 20
        # The feedback series exist at 0 before any label (increase() needs that start).
        prom.wait_for_series(f'{GATEWAY_FEEDBACK_LABELS_TOTAL}{{variant="canary"}}')
        analysis = Analysis(PrometheusClient(prom.url), spec.serve)

        def analyse() -> Any:
            return analysis.run(
                stable=world["stable"],
                canary=world["canary"],
                window_s=120,
                stable_window_s=120,
                at=datetime.now(UTC),
            )

        before = analyse()
        assert before.verdict == "insufficient-data", before
        check = next(c for c in before.checks if c.name == "live_quality_delta")
        assert check.value is None and "too few labelled rows" in check.note
        # Stable was right every time, the canary wrong every time.
        labels = [{"request_id": r, "label": p} for r, p in served_rows["stable"]]
        labels += [{"request_id": r, "label": FLIP[p]} for r, p in served_rows["canary"]]
        r = http.post("/feedback", json={"labels": labels})
        assert r.status_code == 200 and r.json()["joined"] == 80, r.text
    deadline = time.monotonic() + 30
    while True:
        result = analyse()
        check = next(c for c in result.checks if c.name == "live_quality_delta")
        if check.value is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.verdict == "fail", result
    # increase() extrapolates over the window: close to 0 - 1, not exactly.
    assert check.value == pytest.approx(-1.0, abs=0.05)
    assert "accuracy" in check.note

"""The gateway for real: `kubeloop serve` starting `bentoml serve` processes on 127.0.0.1.

* in-process mode: one gateway process loads stable and canary itself;
* remote mode through `kubeloop serve --remote` (the CLI starts two variant services);
* remote mode against variant services started here, the canary with injected faults.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubeloop.serving import metrics as m
from kubeloop.serving.prediction_log import read_prediction_log
from kubeloop.serving.routing import route
from tests.serving_env import (
    admin,
    build_feature_store,
    feature_rows,
    free_port,
    gateway_cmd,
    load,
    metric_lines,
    register_two_versions,
    serve_env,
    served,
    variant_cmd,
    write_spec,
)

pytestmark = pytest.mark.xdist_group("gateway_serve")

ROW = {"x": 0.4, "plan": "pro"}


def post(url: str, **kw: Any) -> httpx.Response:
    return httpx.post(url, timeout=30, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("gateway_serve")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        stable, canary = register_two_versions(tmp / "models")
        yield {
            "tmp": tmp,
            "stable": stable,
            "canary": canary,
            "env": serve_env(str(tmp / "bentoml")),
        }


def test_serve_in_process_routes_measures_and_logs(world: dict[str, Any]) -> None:
    """`kubeloop serve --canary TAG` in-process, 50 % shadow, a filled online store; after
    the process is stopped its prediction log is on disk (flushed at shutdown)."""
    folder = world["tmp"] / "inproc"
    spec_path = write_spec(folder, shadow_percent=50)
    spec = load(spec_path)
    build_feature_store(spec, feature_rows())
    port = free_port()
    cmd = gateway_cmd(spec_path, port, "--canary", world["canary"])
    with served(cmd, port, world["env"], folder / "gateway.log") as base:
        n_canary = _routes_measures(base, world)
    log = read_prediction_log(spec.prediction_log_dir)
    answered = log[~log["shadow"]]
    assert len(answered) == 40 + 10  # the singles and the entity batch; not the 404
    assert (answered["variant"] == "canary").sum() >= n_canary
    assert set(log[log["shadow"]]["variant"]) <= {"shadow"}


def _routes_measures(base: str, world: dict[str, Any]) -> int:
    s, c = world["stable"], world["canary"]
    status = admin(base, "GET", "status").json()
    assert status["mode"] == "in-process" and status["phase"] == "progressing"
    assert status["stable"]["model"] == s and status["canary"]["model"] == c
    assert status["weights"] == {"stable": 100.0, "canary": 0.0}
    r = admin(base, "POST", "weights", {"canary": 50, "phase": "progressing"})
    assert r.status_code == 200, r.text

    rids = [f"u{i}" for i in range(40)]
    for rid in rids:
        body = post(f"{base}/predict", json={"features": ROW, "request_id": rid}).json()
        assert body["variant"] == route(rid, 50)
        assert body["model"] == (c if body["variant"] == "canary" else s)
    out = post(f"{base}/predict_batch", json={"entity_ids": list(range(10))}).json()
    assert [p["variant"] for p in out["predictions"]] == [route(str(i), 50) for i in range(10)]
    r = post(f"{base}/predict_batch", json={"entity_ids": [1, 4242]})
    assert r.status_code == 404 and r.json()["unknown_entity_ids"] == [4242]

    n_canary = sum(route(rid, 50) == "canary" for rid in rids)
    lines = metric_lines(base, m.GATEWAY_PREFIX)
    text = "\n".join(lines)

    def value(name: str, labels: str) -> float:
        found = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
        assert found, f"{name}{{{labels}}} not in:\n{text}"
        return float(found.group(1))

    # prometheus_client orders labels alphabetically.
    ok_c = value(m.GATEWAY_REQUESTS_TOTAL, f'model="{c}",outcome="ok",variant="canary"')
    assert ok_c >= n_canary + 1  # the singles, and the entity batch's canary rows
    value(m.GATEWAY_REQUESTS_TOTAL, f'model="{s}",outcome="not_found",variant="stable"')
    value(m.GATEWAY_REQUESTS_TOTAL, f'model="{c}",outcome="ok",variant="shadow"')
    value(f"{m.GATEWAY_REQUEST_LATENCY_SECONDS}_count", f'model="{s}",variant="stable"')
    value(m.GATEWAY_PREDICTIONS_TOTAL, f'model="{c}",predicted_class="yes",variant="canary"')
    value(f"{m.GATEWAY_PREDICTION_SCORE}_bucket", f'le="0.05",model="{c}",variant="canary"')
    value(f"{m.GATEWAY_REQUEST_ROWS}_count", 'variant="canary"')
    assert f"{m.GATEWAY_FEATURE_LOOKUP_SECONDS}_count 2.0" in lines  # no labels
    assert value(m.GATEWAY_WEIGHT_PERCENT, 'variant="canary"') == 50.0
    assert value(m.GATEWAY_ROLLOUT_PHASE, 'phase="progressing"') == 1.0
    assert value(m.GATEWAY_ROLLOUT_PHASE, 'phase="stable"') == 0.0
    assert f"{m.GATEWAY_PREDICTION_LOG_DROPPED_TOTAL} 0.0" in lines
    assert "pid=" not in text  # the gauges hold one value, not one per process

    r = httpx.get(f"{base}/admin/status")
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    return n_canary


def test_serve_cli_remote_mode(world: dict[str, Any]) -> None:
    """`kubeloop serve --remote`: stable and canary run as variant services; same contract."""
    folder = world["tmp"] / "remote"
    spec_path = write_spec(folder)
    port = free_port()
    cmd = gateway_cmd(spec_path, port, "--remote", "--canary", world["canary"])
    with served(cmd, port, world["env"], folder / "g.log", timeout=180) as base:
        status = admin(base, "GET", "status").json()
        assert status["mode"] == "remote" and status["stable"]["model"] == world["stable"]
        _wait_canary_ready(base)
        r = admin(base, "POST", "weights", {"canary": 100, "phase": "progressing"})
        assert r.status_code == 200, r.text
        body = post(f"{base}/predict", json={"features": ROW}).json()
        assert (body["variant"], body["model"]) == ("canary", world["canary"])
        bad = post(f"{base}/predict", json={"features": {"x": "?", "plan": "a"}})
        assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["features", "x"]
        r = admin(base, "POST", "promote").json()
        # Remote: the stable service cannot be swapped here; all traffic goes to the canary.
        assert r["phase"] == "promoted" and r["weights"]["canary"] == 100.0


def _wait_canary_ready(base: str) -> None:
    deadline = time.monotonic() + 90
    while not (admin(base, "GET", "status").json()["canary"] or {}).get("ready"):
        assert time.monotonic() < deadline, admin(base, "GET", "status").text
        time.sleep(0.3)


def test_serve_remote_faulty_canary_is_502_and_counted(world: dict[str, Any]) -> None:
    """The canary service fails every /predict (fault injection): its rows answer 502 with a
    JSON body, counted as outcome="error" for the canary; stable rows are unharmed."""
    folder = world["tmp"] / "faulty"
    sp, cp, gp = free_port(), free_port(), free_port()
    env, tmp = world["env"], world["tmp"]
    with (
        served(variant_cmd(sp, world["stable"]), sp, env, folder.with_suffix(".s.log")) as s_url,
        served(
            variant_cmd(cp, world["canary"], "fault_error_rate=1.0"),
            cp,
            env,
            folder.with_suffix(".c.log"),
        ) as c_url,
    ):
        spec_path = write_spec(folder, stable_url=s_url, canary_url=c_url)
        cmd = gateway_cmd(spec_path, gp, "--canary", world["canary"])
        with served(cmd, gp, env, tmp / "faulty-gateway.log") as base:
            _wait_canary_ready(base)
            assert admin(base, "POST", "weights", {"canary": 50}).status_code == 200
            canary_rid = next(f"k{i}" for i in range(100) if route(f"k{i}", 50) == "canary")
            stable_rid = next(f"k{i}" for i in range(100) if route(f"k{i}", 50) == "stable")
            r = post(f"{base}/predict", json={"features": ROW, "request_id": canary_rid})
            assert r.status_code == 502 and "canary" in r.json()["detail"], r.text
            r = post(f"{base}/predict", json={"features": ROW, "request_id": stable_rid})
            assert r.status_code == 200 and r.json()["model"] == world["stable"]
            text = "\n".join(metric_lines(base, m.GATEWAY_REQUESTS_TOTAL))
            assert (
                f'{m.GATEWAY_REQUESTS_TOTAL}{{model="{world["canary"]}",outcome="error",'
                'variant="canary"} 1.0'
            ) in text, text
            r = admin(base, "POST", "rollback").json()
            assert r["phase"] == "rolled_back" and r["canary"] is None
            r = post(f"{base}/predict", json={"features": ROW, "request_id": canary_rid})
            assert r.status_code == 200 and r.json()["variant"] == "stable"


def test_serve_cli_errors_are_clear(tmp_path: Path, world: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from kubeloop.pipelines.cli.main import app

    runner = CliRunner()
    empty = write_spec(tmp_path / "empty")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp_path / "no-models"))
        res = runner.invoke(app, ["serve", "--spec", str(empty)])
    assert res.exit_code == 1
    assert "kubeloop models stage TAG production" in res.output and "--stable" in res.output
    res = runner.invoke(app, ["serve", "--spec", str(empty), "--canary", "churn:nope"])
    assert res.exit_code == 1 and "churn:nope" in res.output
    remote = write_spec(tmp_path / "r", stable_url="http://127.0.0.1:1")
    res = runner.invoke(app, ["serve", "--spec", str(remote), "--remote"])
    assert res.exit_code == 1 and "serve.stable_url" in res.output
    res = runner.invoke(app, ["serve", "--spec", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 1 and "missing.yaml" in res.output
    res = runner.invoke(app, ["serve", "--help"])
    assert res.exit_code == 0 and "--remote" in res.output and "--canary" in res.output

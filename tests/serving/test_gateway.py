"""The gateway in-process: the class directly, then over ASGI.

Real parts throughout: models registered by the real tasks into a temporary BentoML home
(two versions of the binary tiny model, plus a multiclass and a regression model), a real
Feast SQLite online store holding the model's features by entity id, the real PredictionLog.
`bentoml serve` (in-process and remote mode) is tested in test_gateway_serve.py.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import JSONResponse

from kubeloop.components.core.spec import Spec
from kubeloop.components.register import registry
from kubeloop.serving import metrics as m
from kubeloop.serving.admin import AdminError
from kubeloop.serving.drift import DriftMonitor
from kubeloop.serving.drift.live import LiveDrift
from kubeloop.serving.gateway import SPEC_ENV, Gateway
from kubeloop.serving.prediction_log import PredictionLog, read_prediction_log
from kubeloop.serving.routing import load_state, route
from kubeloop.serving.schemas import GatewayBatchResponse, GatewayPrediction
from tests import tiny_model
from tests.serving_env import (
    ADMIN_TOKEN,
    build_feature_store,
    feature_rows,
    load,
    register_two_versions,
    write_spec,
)
from tests.tiny_tasks import train_and_register_task

ROW = {"x": 0.4, "plan": "pro"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """BENTOML_HOME -> a scratch store with the models; a spec with a filled online store."""
    tmp = tmp_path_factory.mktemp("gateway")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        stable, canary = register_two_versions(tmp / "models")
        multi = train_and_register_task(tmp / "multi", "multiclass", "tiny_multiclass")
        reg = train_and_register_task(tmp / "reg", "regression", "tiny_regression")
        spec_path = write_spec(tmp / "project", shadow_percent=0)
        spec = load(spec_path)
        latest = build_feature_store(spec, feature_rows())
        yield {
            "tmp": tmp,
            "spec": spec,
            "spec_path": spec_path,
            "stable": stable,
            "canary": canary,
            "multi": multi,
            "reg": reg,
            "latest": latest,
        }


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Made:
    """Gateways built by a test, closed (prediction log flushed) at its end."""

    def __init__(self, world: dict[str, Any], tmp_path: Path) -> None:
        self.world = world
        self.tmp = tmp_path
        self.made: list[Any] = []

    def __call__(self, spec: Spec | None = None, fresh: bool = True, **kw: Any) -> Any:
        spec = spec or self.world["spec"]
        if fresh:  # no routing state carried over from another test
            shutil.rmtree(spec.rollouts_dir, ignore_errors=True)
        log = PredictionLog(self.tmp / f"log{len(self.made)}")
        g = Gateway.inner(spec, prediction_log=log, **kw)
        g.wait_ready(60)
        self.made.append(g)
        return g

    def close(self) -> None:
        for g in self.made:
            g.close()


@pytest.fixture()
def make(world: dict[str, Any], tmp_path: Path) -> Iterator[Made]:
    made = Made(world, tmp_path)
    yield made
    made.close()


def predict(g: Any, **body: Any) -> GatewayPrediction:
    out = run(g.predict(**body))
    assert isinstance(out, GatewayPrediction), getattr(out, "body", out)
    return out


def batch(g: Any, **body: Any) -> GatewayBatchResponse:
    out = run(g.predict_batch(**body))
    assert isinstance(out, GatewayBatchResponse), getattr(out, "body", out)
    return out


def refused(out: Any, status: int) -> dict[str, Any]:
    assert isinstance(out, JSONResponse), out
    assert out.status_code == status, bytes(out.body)
    body: dict[str, Any] = json.loads(bytes(out.body))
    return body


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def with_canary(make: Made, world: dict[str, Any], weight: float, **kw: Any) -> Any:
    g = make(**kw)
    run(g.set_canary(world["canary"]))
    run(g.set_weights(weight, "progressing"))
    return g


# ---------------------------------------------------------------------------- 1. the class


def test_answer_names_model_variant_and_request(make: Made, world: dict[str, Any]) -> None:
    g = make()
    p = predict(g, features=ROW, request_id="req-1")
    assert (p.model, p.variant, p.request_id) == (world["stable"], "stable", "req-1")
    assert p.prediction in ("no", "yes") and p.threshold is not None
    direct = registry.load(world["stable"]).predict(__import__("pandas").DataFrame([ROW]))
    assert p.probabilities == pytest.approx({"no": direct[0][0], "yes": direct[0][1]})


def test_sticky_routing_follows_the_hash(make: Made, world: dict[str, Any]) -> None:
    g = with_canary(make, world, 30)
    want_model = {"stable": world["stable"], "canary": world["canary"]}
    seen = []
    for i in range(120):
        rid = f"user-{i}"
        p = predict(g, features=ROW, request_id=rid)
        assert p.variant == route(rid, 30), rid
        assert p.model == want_model[p.variant]
        seen.append(p.variant)
        assert predict(g, features=ROW, request_id=rid).variant == p.variant  # sticky
    assert 10 < seen.count("canary") < 60  # ~36 of 120


def test_weights_0_and_100(make: Made, world: dict[str, Any]) -> None:
    g = with_canary(make, world, 0)
    assert {predict(g, features=ROW).variant for _ in range(30)} == {"stable"}
    run(g.set_weights(100, "progressing"))
    answers = [predict(g, features=ROW) for _ in range(30)]
    assert {(p.variant, p.model) for p in answers} == {("canary", world["canary"])}


def test_entity_ids_use_the_online_store_and_split_in_order(
    make: Made, world: dict[str, Any]
) -> None:
    g = with_canary(make, world, 50)
    ids = list(range(0, 30))
    out = batch(g, entity_ids=ids, request_id="b1")
    assert len(out.predictions) == len(ids)
    variants = [p.variant for p in out.predictions]
    assert variants == [route(str(i), 50) for i in ids]  # keyed by entity id
    assert {"stable", "canary"} == set(variants)
    latest = world["latest"]
    for i, p in zip(ids, out.predictions, strict=True):
        # Same answer as sending the store's feature values for that entity.
        direct = predict(g, features=latest[i], request_id=str(i))
        assert p.probabilities == pytest.approx(direct.probabilities)
        assert p.model == direct.model and p.request_id == "b1"
    one = predict(g, entity_id=7)
    assert one.variant == route("7", 50)


def test_unknown_entity_ids_are_404_listing_them(make: Made) -> None:
    g = make()
    before = sample(
        m.GATEWAY_REQUESTS_TOTAL,
        variant="stable",
        model=g.status()["stable"]["model"],
        outcome="not_found",
    )
    body = refused(run(g.predict_batch(entity_ids=[1, 999, "nope", 2])), 404)
    assert body["unknown_entity_ids"] == [999, "nope"]
    assert "unknown" in body["detail"]
    body = refused(run(g.predict(entity_id=12345)), 404)
    assert body["unknown_entity_ids"] == [12345]
    after = sample(
        m.GATEWAY_REQUESTS_TOTAL,
        variant="stable",
        model=g.status()["stable"]["model"],
        outcome="not_found",
    )
    assert after == before + 2


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"features": {"x": "high", "plan": "pro"}}, ["features", "x"]),
        ({"features": {"x": 1.0}}, ["features", "plan"]),
        ({"features": {"x": 1.0, "plan": "pro", "age": 3}}, ["features", "age"]),
        ({"features": {"x": float("nan"), "plan": "pro"}}, ["features", "x"]),
        ({"features": {"x": 1.0, "plan": ["pro"]}}, ["features", "plan"]),
    ],
)
def test_bad_features_are_400_naming_the_field(
    make: Made, body: dict[str, Any], loc: list[Any]
) -> None:
    g = make() if not make.made else make.made[0]
    err = refused(run(g.predict(**body)), 400)
    assert [e["loc"] for e in err["detail"]] == [loc]


def test_bad_batch_rows_and_too_many_rows(make: Made, world: dict[str, Any]) -> None:
    g = make()
    err = refused(run(g.predict_batch(rows=[ROW, {"x": "?", "plan": "a"}])), 400)
    assert [e["loc"] for e in err["detail"]] == [["rows", 1, "x"]]
    limit = world["spec"].serve.max_rows
    err = refused(run(g.predict_batch(rows=[ROW] * (limit + 1))), 400)
    [e] = err["detail"]
    assert e["loc"] == ["rows"] and str(limit) in e["msg"]
    err = refused(run(g.predict_batch(entity_ids=[1] * (limit + 1))), 400)
    assert err["detail"][0]["loc"] == ["entity_ids"]


def test_shadow_is_never_returned_but_measured_and_logged(
    make: Made, world: dict[str, Any], tmp_path: Path
) -> None:
    spec = world["spec"]
    shadow_spec = spec.model_copy(
        update={"serve": spec.serve.model_copy(update={"shadow_percent": 100.0})}
    )
    g = with_canary(make, world, 0, spec=shadow_spec)
    canary = world["canary"]
    before = sample(m.GATEWAY_REQUESTS_TOTAL, variant="shadow", model=canary, outcome="ok")
    rows_before = sample(f"{m.GATEWAY_REQUEST_ROWS}_sum", variant="shadow")

    async def burst() -> list[Any]:
        answers = [await g.predict_batch(rows=[ROW] * 3, request_id=f"s{i}") for i in range(5)]
        await asyncio.gather(*list(g._shadow_tasks))  # the mirrored calls run off the path
        return answers

    answers = run(burst())
    assert all(p.variant == "stable" for a in answers for p in a.predictions)
    assert sample(m.GATEWAY_REQUESTS_TOTAL, variant="shadow", model=canary, outcome="ok") == (
        before + 5
    )
    assert sample(f"{m.GATEWAY_REQUEST_ROWS}_sum", variant="shadow") == rows_before + 15
    g._log.flush(30)
    log = read_prediction_log(g._log.folder)
    shadow = log[log["shadow"]]
    assert len(shadow) == 15 and set(shadow["variant"]) == {"shadow"}
    assert set(shadow["model"]) == {canary}
    assert set(log[~log["shadow"]]["variant"]) == {"stable"}


def test_prediction_log_records_every_answered_row(make: Made, world: dict[str, Any]) -> None:
    g = with_canary(make, world, 50)
    out = batch(g, entity_ids=[3, 4, 5, 6], request_id="logged")
    predict(g, features=ROW, request_id="single")
    g._log.flush(30)
    log = read_prediction_log(g._log.folder)
    mine = log[log["request_id"] == "logged"].sort_values("row")
    assert list(mine["row"]) == [0, 1, 2, 3]
    assert list(mine["entity_id"]) == ["3", "4", "5", "6"]
    assert list(mine["variant"]) == [p.variant for p in out.predictions]
    assert list(mine["model"]) == [p.model for p in out.predictions]
    assert json.loads(mine.iloc[0]["features"]) == world["latest"][3]
    assert json.loads(mine.iloc[0]["prediction"]) == out.predictions[0].prediction
    single = log[log["request_id"] == "single"].iloc[0]
    assert json.loads(single["features"]) == ROW and single["entity_id"] is None


def wait_for(what: str, predicate: Any, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def test_live_drift_windows_follow_the_serving_model(make: Made, world: dict[str, Any]) -> None:
    """Served rows fill the answering variant's drift window (the model's reference sample,
    spec.monitor settings); shifted traffic is reported drifted on /metrics' gauges; a
    promoted canary starts a new window for its own model."""
    from prometheus_client import REGISTRY

    spec = world["spec"].model_copy(
        update={"monitor": world["spec"].monitor.model_copy(update={"drift_window": 300})}
    )
    drift = LiveDrift(spec, monitor=DriftMonitor(check_interval_s=0.2))
    g = make(spec, drift=drift)
    batch(g, rows=[ROW])  # the first rows of a model start its window
    wait_for("the stable window", lambda: drift.monitor.variants == ["stable"])

    shifted = tiny_model.rows(300, seed=21).assign(x=lambda d: d["x"] + 1.5)
    batch(g, rows=shifted[["x", "plan"]].to_dict("records"))
    report = wait_for("a drift check", lambda: drift.monitor.report("stable"))
    assert report.n_rows == 300 and report.drifted and "x" in report.drifted_columns
    drifted = {"variant": "stable", "model": world["stable"]}
    assert REGISTRY.get_sample_value("kubeloop_drift_window_drifted", drifted) == 1.0

    run(g.set_canary(world["canary"]))
    run(g.set_weights(100, "progressing"))
    run(g.promote())
    batch(g, rows=[ROW])
    wait_for(
        "the new model's window",
        lambda: drift.monitor.report("stable") is None and drift.monitor.variants == ["stable"],
    )
    assert REGISTRY.get_sample_value("kubeloop_drift_window_drifted", drifted) is None


def test_metrics_per_variant(make: Made, world: dict[str, Any]) -> None:
    g = with_canary(make, world, 50)
    s, c = world["stable"], world["canary"]

    def counts() -> dict[str, float]:
        return {
            "ok_s": sample(m.GATEWAY_REQUESTS_TOTAL, variant="stable", model=s, outcome="ok"),
            "ok_c": sample(m.GATEWAY_REQUESTS_TOTAL, variant="canary", model=c, outcome="ok"),
            "lat_c": sample(
                f"{m.GATEWAY_REQUEST_LATENCY_SECONDS}_count", variant="canary", model=c
            ),
            "score_c": sample(f"{m.GATEWAY_PREDICTION_SCORE}_count", variant="canary", model=c),
            "classes_c": sum(
                sample(m.GATEWAY_PREDICTIONS_TOTAL, variant="canary", model=c, predicted_class=k)
                for k in ("no", "yes")
            ),
            "invalid_s": sample(
                m.GATEWAY_REQUESTS_TOTAL, variant="stable", model=s, outcome="invalid"
            ),
            "lookup": sample(f"{m.GATEWAY_FEATURE_LOOKUP_SECONDS}_count"),
        }

    before = counts()
    ids = list(range(20))
    out = batch(g, entity_ids=ids)
    n_canary = sum(p.variant == "canary" for p in out.predictions)
    assert 0 < n_canary < len(ids)
    run(
        g.predict(
            features={"x": "bad", "plan": "pro"},
            request_id=next(f"r{i}" for i in range(100) if route(f"r{i}", 50) == "stable"),
        )
    )
    after = counts()
    assert after["ok_s"] == before["ok_s"] + 1  # once per variant per request
    assert after["ok_c"] == before["ok_c"] + 1
    assert after["lat_c"] == before["lat_c"] + 1
    assert after["score_c"] == before["score_c"] + n_canary  # one score per row
    assert after["classes_c"] == before["classes_c"] + n_canary
    assert after["invalid_s"] == before["invalid_s"] + 1
    assert after["lookup"] == before["lookup"] + 1
    assert sample(m.GATEWAY_WEIGHT_PERCENT, variant="canary") == 50
    assert sample(m.GATEWAY_WEIGHT_PERCENT, variant="stable") == 50
    assert sample(m.GATEWAY_ROLLOUT_PHASE, phase="progressing") == 1
    assert sample(m.GATEWAY_ROLLOUT_PHASE, phase="stable") == 0


def test_multiclass_model_through_the_gateway(make: Made, world: dict[str, Any]) -> None:
    g = make(stable=world["multi"])
    tag = world["multi"]
    before = sum(
        sample(m.GATEWAY_PREDICTIONS_TOTAL, variant="stable", model=tag, predicted_class=k)
        for k in ("low", "mid", "high")
    )
    out = batch(
        g, rows=[{"x": -2.0, "plan": "pro"}, {"x": 0.0, "plan": "a"}, {"x": 2.0, "plan": None}]
    )
    assert [p.model for p in out.predictions] == [tag] * 3
    assert {p.prediction for p in out.predictions} <= {"low", "mid", "high"}
    assert all(set(p.probabilities or {}) == {"low", "mid", "high"} for p in out.predictions)
    assert out.predictions[0].threshold is None
    after = sum(
        sample(m.GATEWAY_PREDICTIONS_TOTAL, variant="stable", model=tag, predicted_class=k)
        for k in ("low", "mid", "high")
    )
    assert after == before + 3


def test_regression_model_through_the_gateway(make: Made, world: dict[str, Any]) -> None:
    g = make(stable=world["reg"])
    tag = world["reg"]
    before = sample(f"{m.GATEWAY_PREDICTION_VALUE}_count", variant="stable", model=tag)
    lo = predict(g, features={"x": -1.0, "plan": "pro"})
    hi = predict(g, features={"x": 1.0, "plan": "pro"})
    assert isinstance(lo.prediction, float) and lo.probabilities is None
    assert hi.prediction > lo.prediction  # y = 3x + noise
    assert sample(f"{m.GATEWAY_PREDICTION_VALUE}_count", variant="stable", model=tag) == before + 2


def test_incompatible_canary_is_409_naming_the_difference(
    make: Made, world: dict[str, Any]
) -> None:
    g = make()
    with pytest.raises(AdminError) as err:
        run(g.set_canary(world["reg"]))
    assert err.value.status == 409
    assert "name" in str(err.value) and "task" in str(err.value)
    with pytest.raises(AdminError) as err:
        run(g.set_canary("churn:no-such-version"))
    assert err.value.status == 409 and "no-such-version" in str(err.value)
    assert g.status()["canary"] is None and g.status()["phase"] == "stable"


def test_weights_need_a_canary(make: Made) -> None:
    g = make()
    with pytest.raises(AdminError) as err:
        run(g.set_weights(10, None))
    assert err.value.status == 409 and "/admin/canary" in str(err.value)
    with pytest.raises(AdminError):
        run(g.promote())


def test_promote_swaps_and_persists(make: Made, world: dict[str, Any]) -> None:
    g = with_canary(make, world, 25)
    status = run(g.promote())
    assert status["phase"] == "promoted" and status["canary"] is None
    assert status["stable"]["model"] == world["canary"]
    assert status["weights"] == {"stable": 100.0, "canary": 0.0}
    assert predict(g, features=ROW).model == world["canary"]
    state = load_state(world["spec"].rollouts_dir)
    assert state is not None
    assert (state.stable, state.canary, state.weight, state.phase) == (
        world["canary"],
        None,
        0.0,
        "promoted",
    )
    # A restart without explicit tags serves the promoted model.
    again = make(fresh=False)
    assert again.status()["stable"]["model"] == world["canary"]
    assert again.status()["phase"] == "promoted"


def test_rollback_unloads_canary(make: Made, world: dict[str, Any]) -> None:
    g = with_canary(make, world, 100)
    assert predict(g, features=ROW).variant == "canary"
    status = run(g.rollback())
    assert status["phase"] == "rolled_back" and status["canary"] is None
    assert status["weights"]["canary"] == 0.0
    assert {predict(g, features=ROW).variant for _ in range(10)} == {"stable"}
    assert sample(m.GATEWAY_ROLLOUT_PHASE, phase="rolled_back") == 1


def test_restart_resumes_a_rollout_in_progress(make: Made, world: dict[str, Any]) -> None:
    g = with_canary(make, world, 10)
    run(g.set_weights(10, "paused"))
    again = make(fresh=False)
    again.slots["canary"].wait(60)
    status = again.status()
    assert status["canary"]["model"] == world["canary"]
    assert status["weights"]["canary"] == 10.0 and status["phase"] == "paused"


def test_not_ready_is_503_until_the_stable_model_loads(
    world: dict[str, Any], tmp_path: Path
) -> None:
    release = threading.Event()

    def slow(tag: str) -> registry.RegisteredModel:
        release.wait(30)
        return registry.load(tag)

    shutil.rmtree(world["spec"].rollouts_dir, ignore_errors=True)
    g = Gateway.inner(world["spec"], loader=slow, prediction_log=PredictionLog(tmp_path / "l"))
    try:
        assert not g.__is_ready__() and g.__is_alive__()
        body = refused(run(g.predict(features=ROW)), 503)
        assert "still loading" in body["detail"]
        release.set()
        g.wait_ready(60)
        assert g.__is_ready__()
        assert predict(g, features=ROW).model == world["stable"]
    finally:
        release.set()
        g.close()


def test_failed_stable_load_is_not_alive(world: dict[str, Any], tmp_path: Path) -> None:
    shutil.rmtree(world["spec"].rollouts_dir, ignore_errors=True)
    g = Gateway.inner(
        world["spec"], stable="churn:nope", prediction_log=PredictionLog(tmp_path / "l")
    )
    try:
        deadline = time.monotonic() + 30
        while g.__is_alive__():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not g.__is_ready__()
        assert "nope" in refused(run(g.predict(features=ROW)), 503)["detail"]
    finally:
        g.close()


# ---------------------------------------------------------------------------- 2. over ASGI


@functools.cache
def asgi_app() -> Any:
    """The gateway's ASGI app, built once per process and without BentoML's own request
    metrics middleware: that registers global prometheus collectors once per process, and
    the variant's ASGI test may already have done so in this worker. The gateway's own
    kubeloop_gateway_* series are unaffected (and /metrics is checked under bentoml serve)."""
    from _bentoml_impl.server.app import ServiceAppFactory

    Gateway.inject_config()
    return ServiceAppFactory(Gateway, is_main=True, enable_metrics=False)()


@pytest.fixture(scope="module")
def client(world: dict[str, Any]) -> Iterator[Any]:
    from starlette.testclient import TestClient

    shutil.rmtree(world["spec"].rollouts_dir, ignore_errors=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SPEC_ENV, str(world["spec_path"]))
        mp.setenv("KUBELOOP_ADMIN_TOKEN", ADMIN_TOKEN)
        with TestClient(asgi_app()) as c:
            deadline = time.monotonic() + 60
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "gateway never became ready"
                time.sleep(0.05)
            yield c


AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_asgi_predict_and_headers(client: Any, world: dict[str, Any]) -> None:
    r = client.post("/predict", json={"features": ROW}, headers={"x-request-id": "hdr-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "prediction",
        "probabilities",
        "threshold",
        "model",
        "variant",
        "request_id",
    }
    assert (body["model"], body["variant"], body["request_id"]) == (
        world["stable"],
        "stable",
        "hdr-1",
    )
    r = client.post(
        "/predict", json={"features": ROW, "request_id": "body-1"}, headers={"x-request-id": "h"}
    )
    assert r.json()["request_id"] == "body-1"
    generated = client.post("/predict", json={"features": ROW}).json()["request_id"]
    assert len(generated) == 32
    r = client.post("/predict_batch", json={"entity_ids": [1, 2]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    assert client.get("/livez").status_code == 200


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        (b'{"features": {"x": NaN, "plan": "pro"}}', ["features", "x"]),
        (b'{"features": {"x": 1, "plan": "pro"}, "extra": 1}', ["extra"]),
        (b'{"entity_id": true}', ["entity_id"]),
        (b'{"entity_id": 3, "features": {}}', []),
        (b"{}", []),
        (b"not json", []),
    ],
)
def test_asgi_bad_body_is_400_json(client: Any, content: bytes, loc: list[Any]) -> None:
    r = client.post("/predict", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    locs = [e["loc"][: len(loc)] for e in r.json()["detail"]]
    assert loc in locs, r.text


def test_asgi_unknown_entity_is_404(client: Any) -> None:
    r = client.post("/predict_batch", json={"entity_ids": [5, 777]})
    assert r.status_code == 404
    assert r.json()["unknown_entity_ids"] == [777]


ADMIN_CALLS = [
    ("GET", "status", None),
    ("POST", "canary", {"model": "churn:latest"}),
    ("POST", "weights", {"canary": 10}),
    ("POST", "promote", None),
    ("POST", "rollback", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS, ids=[c[1] for c in ADMIN_CALLS])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": "Basic x"},
    ],
    ids=["none", "wrong", "no-scheme", "basic"],
)
def test_asgi_admin_needs_the_token(
    client: Any, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    r = client.request(method, f"/admin/{path}", json=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"


def test_asgi_admin_disabled_without_token_env(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBELOOP_ADMIN_TOKEN")
    for method, path, body in ADMIN_CALLS:
        r = client.request(method, f"/admin/{path}", json=body, headers=AUTH)
        assert r.status_code == 401
        assert "set the environment variable KUBELOOP_ADMIN_TOKEN" in r.json()["detail"]


def test_asgi_admin_flow(client: Any, world: dict[str, Any]) -> None:
    r = client.get("/admin/status", headers=AUTH)
    assert r.status_code == 200 and r.json()["phase"] == "stable" and r.json()["canary"] is None
    bad = client.post("/admin/weights", json={"canary": 150}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["canary"]
    assert client.post("/admin/weights", content=b"nope", headers=AUTH).status_code == 400
    r = client.post("/admin/canary", json={"model": world["canary"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["canary"] == {"model": world["canary"], "ready": True, "error": None}
    r = client.post("/admin/weights", json={"canary": 100, "phase": "progressing"}, headers=AUTH)
    assert r.json()["weights"] == {"stable": 0.0, "canary": 100.0}
    assert client.post("/predict", json={"features": ROW}).json()["variant"] == "canary"
    r = client.post("/admin/rollback", headers=AUTH)
    assert r.json()["phase"] == "rolled_back"
    assert client.post("/predict", json={"features": ROW}).json()["variant"] == "stable"
    r = client.post("/admin/promote", headers=AUTH)
    assert r.status_code == 409 and "nothing to promote" in r.json()["detail"]
    assert client.get("/admin/nope", headers=AUTH).status_code == 404


def test_asgi_non_json_content_type_is_415(client: Any) -> None:
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/vnd.bentoml+pickle",
    ):
        r = client.post("/predict", content=b'{"features": {}}', headers={"content-type": ctype})
        assert r.status_code == 415 and "application/json" in r.json()["detail"], r.text


# ---------------------------------------------------------------------------- fault injection


def test_variant_fault_injection(world: dict[str, Any]) -> None:
    """ModelVariant's drill faults: constant answers, and failing calls."""
    from kubeloop.serving.variant import Faults, InjectedFault, ModelVariant

    constant = ModelVariant.inner(world["stable"], faults=Faults(constant=True))
    constant.wait_loaded(60)
    out = run(constant.predict([{"x": 3.0, "plan": "pro"}, {"x": -3.0, "plan": "basic"}]))
    assert [p.prediction for p in out] == ["no", "no"]  # the first class, whatever the row
    assert out[0].probabilities == {"no": 1.0, "yes": 0.0}
    failing = ModelVariant.inner(world["stable"], faults=Faults(error_rate=1.0))
    failing.wait_loaded(60)
    before = sample(m.REQUESTS_TOTAL, model=world["stable"], outcome="error")
    with pytest.raises(InjectedFault):
        run(failing.predict([ROW]))
    assert sample(m.REQUESTS_TOTAL, model=world["stable"], outcome="error") == before + 1
    regression = ModelVariant.inner(world["reg"], faults=Faults(constant=True))
    regression.wait_loaded(60)
    assert [p.prediction for p in run(regression.predict([ROW, ROW]))] == [0.0, 0.0]
    assert not Faults().active and Faults(delay_ms=5).active

"""POST /feedback on the real gateway: the class directly, then over ASGI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.responses import JSONResponse

from kubeloop.components.core.spec import Spec
from kubeloop.serving import metrics as m
from kubeloop.serving.feedback.api import FeedbackResponse
from kubeloop.serving.feedback.labels import read_labels
from kubeloop.serving.gateway import SPEC_ENV, Gateway
from kubeloop.serving.routing import route

pytestmark = pytest.mark.xdist_group("feedback")

ROWS = [{"x": x / 10, "plan": "pro" if x % 2 else "basic"} for x in range(-10, 10)]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def gateways() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for g in made:
        g.close()


def gateway(made: list[Any], spec: Spec, **kw: Any) -> Any:
    g = Gateway.inner(spec, **kw)
    g.wait_ready(60)
    made.append(g)
    return g


def feedback(g: Any, labels: list[dict[str, Any]]) -> FeedbackResponse:
    out = run(g.feedback(labels=labels))
    assert isinstance(out, FeedbackResponse), getattr(out, "body", out)
    return out


def refused(g: Any, labels: list[Any], status: int = 400) -> dict[str, Any]:
    import json

    out = run(g.feedback(labels=labels))
    assert isinstance(out, JSONResponse) and out.status_code == status, out
    body: dict[str, Any] = json.loads(bytes(out.body))
    return body


def test_labels_join_served_rows_and_update_live_quality(
    make_spec: Callable[..., Spec], models: dict[str, Any], gateways: list[Any]
) -> None:
    spec = make_spec()
    g = gateway(gateways, spec)
    tag = models["stable"]
    answer = run(g.predict_batch(rows=ROWS, request_id="batch-1"))
    preds = [p.prediction for p in answer.predictions]
    # Labels: the prediction for the first 15 rows, the other class for the last 5.
    flip = {"yes": "no", "no": "yes"}
    truth = [p if i < 15 else flip[p] for i, p in enumerate(preds)]
    vm = {"variant": "stable", "model": tag}
    before = sample(m.GATEWAY_FEEDBACK_LABELS_TOTAL, **vm)
    out = feedback(
        g, [{"request_id": "batch-1", "row": i, "label": y} for i, y in enumerate(truth)]
    )
    assert (out.received, out.joined, out.relabelled, out.unmatched) == (20, 20, 0, 0)
    assert sample(m.GATEWAY_FEEDBACK_LABELS_TOTAL, **vm) == before + 20
    wrong = sum(
        sample(m.GATEWAY_FEEDBACK_OUTCOMES_TOTAL, **vm, predicted_class=p, actual_class=flip[p])
        for p in ("yes", "no")
    )
    assert wrong >= 5
    accuracy = sample(m.GATEWAY_LIVE_QUALITY, **vm, metric="accuracy")
    assert accuracy == pytest.approx(15 / 20)  # window 20: exactly these rows
    assert 0 <= sample(m.GATEWAY_LIVE_QUALITY, **vm, metric="f1") <= 1
    # Every label is on disk, joined or not; a relabel and an unknown row are logged too.
    again = feedback(
        g, [{"request_id": "batch-1", "label": "yes"}, {"request_id": "nope", "label": "no"}]
    )
    assert (again.joined, again.relabelled, again.unmatched) == (0, 1, 1)
    assert sample(m.GATEWAY_FEEDBACK_LABELS_TOTAL, **vm) == before + 20  # not counted twice
    labels = read_labels(spec.feedback_dir)
    assert len(labels) == 22
    assert labels["label"].iloc[0] == f'"{truth[0]}"' and labels["source"].iloc[0] == "api"


def test_live_quality_waits_for_min_labels(
    make_spec: Callable[..., Spec], models: dict[str, Any], gateways: list[Any]
) -> None:
    """The regression model: absolute errors at once, mae/rmse only from the 5th label."""
    spec = make_spec()
    g = gateway(gateways, spec, stable=models["reg"])
    vm = {"variant": "stable", "model": models["reg"]}
    count = f"{m.GATEWAY_FEEDBACK_ABSOLUTE_ERROR}_count"
    before = sample(count, **vm)
    ids = []
    for i in range(5):
        p = run(g.predict(features=ROWS[i], request_id=f"reg-{i}"))
        ids.append((f"reg-{i}", float(p.prediction)))
    feedback(g, [{"request_id": rid, "label": v + 1.0} for rid, v in ids[:4]])
    assert sample(count, **vm) == before + 4
    assert sample(f"{m.GATEWAY_FEEDBACK_ABSOLUTE_ERROR}_sum", **vm) > 0
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value(m.GATEWAY_LIVE_QUALITY, {**vm, "metric": "mae"}) is None
    rid, v = ids[4]
    feedback(g, [{"request_id": rid, "label": v - 1.0}])
    assert sample(m.GATEWAY_LIVE_QUALITY, **vm, metric="mae") == pytest.approx(1.0, abs=1e-6)
    assert sample(m.GATEWAY_LIVE_QUALITY, **vm, metric="rmse") == pytest.approx(1.0, abs=1e-6)


def test_shadow_rows_get_the_label_as_variant_shadow(
    make_spec: Callable[..., Spec], models: dict[str, Any], gateways: list[Any]
) -> None:
    spec = make_spec(shadow_percent=100)
    g = gateway(gateways, spec)
    run(g.set_canary(models["canary"]))
    shadow_vm = {"variant": "shadow", "model": models["canary"]}
    before = sample(m.GATEWAY_FEEDBACK_LABELS_TOTAL, **shadow_vm)

    async def predict_then_wait() -> None:
        await g.predict(features=ROWS[0], request_id="sh-1")
        while g._shadow_tasks:  # the mirrored scoring runs off the request path
            await asyncio.sleep(0.01)

    run(predict_then_wait())
    out = feedback(g, [{"request_id": "sh-1", "label": "yes"}])
    assert (out.joined, out.unmatched) == (1, 0)  # the served row; the shadow is extra
    assert sample(m.GATEWAY_FEEDBACK_LABELS_TOTAL, **shadow_vm) == before + 1


@pytest.mark.parametrize(
    ("labels", "loc"),
    [
        ([{"request_id": "a", "label": "maybe"}], ["labels", 0, "label"]),
        (
            [{"request_id": "a", "label": "yes"}, {"request_id": "b", "label": 3.5}],
            ["labels", 1, "label"],
        ),
        ([{"request_id": "a", "label": "yes"}] * 4, ["labels"]),  # max_rows 3 below
    ],
)
def test_bad_labels_are_400_naming_the_field_and_nothing_is_written(
    make_spec: Callable[..., Spec],
    gateways: list[Any],
    labels: list[dict[str, Any]],
    loc: list[Any],
) -> None:
    spec = make_spec(max_rows=3)
    g = gateway(gateways, spec)
    body = refused(g, labels)
    assert loc in [e["loc"] for e in body["detail"]], body
    assert read_labels(spec.feedback_dir).empty


def test_regression_labels_must_be_finite_numbers(
    make_spec: Callable[..., Spec], models: dict[str, Any], gateways: list[Any]
) -> None:
    spec = make_spec()
    g = gateway(gateways, spec, stable=models["reg"])
    body = refused(g, [{"request_id": "a", "label": "high"}])
    assert body["detail"][0]["loc"] == ["labels", 0, "label"]
    assert "number" in body["detail"][0]["msg"]
    assert read_labels(spec.feedback_dir).empty


# ---------------------------------------------------------------------------- over ASGI


@pytest.fixture
def client(make_spec: Callable[..., Spec], tmp_path: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from tests.serving.test_gateway import asgi_app

    spec = make_spec()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SPEC_ENV, str(tmp_path / "project" / "kubeloop.yaml"))
        with TestClient(asgi_app()) as c:
            deadline = time.monotonic() + 60
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "gateway never became ready"
                time.sleep(0.05)
            c.spec = spec  # type: ignore[attr-defined]
            yield c


def test_asgi_feedback(client: Any) -> None:
    rid = next(f"r{i}" for i in range(100) if route(f"r{i}", 0) == "stable")
    r = client.post("/predict", json={"features": ROWS[0]}, headers={"x-request-id": rid})
    assert r.status_code == 200, r.text
    r = client.post(
        "/feedback", json={"labels": [{"request_id": rid, "label": r.json()["prediction"]}]}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 1, "joined": 1, "relabelled": 0, "unmatched": 0}
    for content, loc in [
        (b"not json", []),
        (b'{"labels": []}', ["labels"]),
        (b'{"labels": [{"row": 0, "label": "yes"}]}', ["labels", 0, "request_id"]),
        (b'{"labels": [{"request_id": "a", "row": -1, "label": "yes"}]}', ["labels", 0, "row"]),
        (b'{"labels": [{"request_id": "a", "label": null}]}', ["labels", 0, "label"]),
        (b'{"labels": [{"request_id": "a", "label": "maybe"}]}', ["labels", 0, "label"]),
    ]:
        r = client.post("/feedback", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400, (content, r.text)
        locs = [e["loc"][: len(loc)] for e in r.json()["detail"]]
        assert loc in locs, (content, r.text)
    r = client.post("/feedback", content=b"a=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert len(read_labels(client.spec.feedback_dir)) == 1


def test_the_readme_feedback_example_joins_its_prediction(
    make_spec: Callable[..., Spec], gateways: list[Any]
) -> None:
    """The README's curl body, sent after a prediction answered as `req-42`."""
    import json
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    found = re.search(r"localhost:3000/feedback .*?\n\s*-d '(\{.*?\})'", readme, re.S)
    assert found, "README feedback example not found"
    body = json.loads(found[1])
    g = gateway(gateways, make_spec())
    run(g.predict(features=ROWS[0], request_id=body["labels"][0]["request_id"]))
    out = feedback(g, body["labels"])
    assert (out.received, out.joined) == (1, 1)

"""Model variant service at three depths: the class, over ASGI, and `bentoml serve` for real.

One tiny real model (binary, numeric `x` + categorical `plan`) is trained, evaluated and
registered once per module into a temporary BentoML home.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.register import registry
from kubeloop.serving import metrics as m
from kubeloop.serving.schemas import Prediction, VariantMetadata
from kubeloop.serving.variant import MODEL_TAG_ENV, ModelVariant
from tests.tiny_model import train_and_register

GOOD_ROWS: list[dict[str, Any]] = [
    {"x": 2.0, "plan": "pro"},
    {"x": -2.0, "plan": "basic"},
    {"x": None, "plan": None},  # both imputed by the registered clean params
    {"x": 1, "plan": "enterprise"},  # an int for a float, an unseen category
]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """BENTOML_HOME -> a temp store holding one real registered model (promoted to
    production); yields its tag."""
    tmp = tmp_path_factory.mktemp("variant")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        tag = train_and_register(tmp)
        registry.set_stage(tag, "production")
        yield tag


@pytest.fixture()
def variant(registered: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The service object as BentoML builds it (`ModelVariant()`), the tag from the env var."""
    monkeypatch.setenv(MODEL_TAG_ENV, "churn:production")
    svc = ModelVariant()
    svc.wait_loaded(30)
    return svc


# ---------------------------------------------------------------------------- 1. the class


def predict(svc: Any, rows: list[dict[str, Any]]) -> list[Prediction]:
    """`predict` is async (it awaits the batchable `score`); run it to completion."""
    result: list[Prediction] = asyncio.run(svc.predict(rows))
    return result


def test_class_loads_alias_and_predicts(variant: Any, registered: str) -> None:
    assert variant.__is_ready__() and variant.__is_alive__()
    assert variant.loaded.tag == registered  # the stage alias resolved to the real tag
    out = predict(variant, GOOD_ROWS)
    assert len(out) == len(GOOD_ROWS)
    for p in out:
        assert isinstance(p, Prediction)
        assert p.model == registered and p.prediction in ("no", "yes")
        assert p.probabilities is not None and set(p.probabilities) == {"no", "yes"}
        assert math.isclose(sum(p.probabilities.values()), 1.0, rel_tol=1e-6)
        assert p.threshold is not None
        assert p.prediction == ("yes" if p.probabilities["yes"] >= p.threshold else "no")
    # The model learned y ~ x: a large x is "yes", a small one "no".
    assert out[0].probabilities["yes"] > out[1].probabilities["yes"]  # type: ignore[index]


def test_class_matches_registry_predict(variant: Any, registered: str) -> None:
    """The service adds validation, not different numbers: same rows, same probabilities."""
    rows = [{"x": v, "plan": p} for v, p in ((0.3, "pro"), (None, "basic"), (-1.2, None))]
    out = predict(variant, rows)
    direct = registry.load(registered).predict(pd.DataFrame(rows))
    got = np.array([[p.probabilities["no"], p.probabilities["yes"]] for p in out])
    np.testing.assert_allclose(got, direct, rtol=1e-6)


def test_class_metadata(variant: Any, registered: str) -> None:
    meta = variant.metadata()
    assert isinstance(meta, VariantMetadata)
    assert meta.tag == registered and meta.stage == "production"
    assert meta.task == "binary" and meta.classes == ["no", "yes"]
    assert set(meta.features) == {"x", "plan"} and list(meta.feature_kinds) == meta.features
    assert meta.feature_kinds == {"x": "numeric", "plan": "categorical"}
    assert meta.feature_service and "roc_auc" in meta.metrics and meta.threshold is not None


def test_class_bad_rows_name_the_field(variant: Any) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        predict(variant, [{"x": 1.0, "plan": "pro", "extra": 1}, {"plan": "pro"}])
    locs = {tuple(e["loc"]) for e in err.value.errors()}
    assert locs == {("rows", 0, "extra"), ("rows", 1, "x")}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_class_non_finite_number_is_located(variant: Any, bad: float) -> None:
    """JSON has no NaN/Infinity literal, so only a direct call reaches allow_inf_nan=False."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        predict(variant, [{"x": 1.0, "plan": "pro"}, {"x": bad, "plan": "pro"}])
    assert [tuple(e["loc"]) for e in err.value.errors()] == [("rows", 1, "x")]


def test_metrics_count_requests_batches_and_classes(variant: Any, registered: str) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    ok = value(m.REQUESTS_TOTAL, model=registered, outcome="ok")
    invalid = value(m.REQUESTS_TOTAL, model=registered, outcome="invalid")
    batches = value(f"{m.BATCH_SIZE}_count", model=registered)
    rows = value(f"{m.BATCH_SIZE}_sum", model=registered)
    latency = value(f"{m.REQUEST_LATENCY_SECONDS}_count", model=registered)
    classes = sum(
        value(m.PREDICTIONS_TOTAL, model=registered, predicted_class=c) for c in ("no", "yes")
    )
    predict(variant, GOOD_ROWS)
    with pytest.raises(Exception):  # noqa: B017 - the ValidationError itself is tested above
        predict(variant, [])
    assert value(m.REQUESTS_TOTAL, model=registered, outcome="ok") == ok + 1
    assert value(m.REQUESTS_TOTAL, model=registered, outcome="invalid") == invalid + 1
    assert value(f"{m.BATCH_SIZE}_count", model=registered) == batches + 1
    assert value(f"{m.BATCH_SIZE}_sum", model=registered) == rows + len(GOOD_ROWS)
    assert value(f"{m.REQUEST_LATENCY_SECONDS}_count", model=registered) == latency + 1
    after = sum(
        value(m.PREDICTIONS_TOTAL, model=registered, predicted_class=c) for c in ("no", "yes")
    )
    assert after == classes + len(GOOD_ROWS)


def test_metrics_label_is_the_loaded_tag_even_if_loading_ends_mid_request(
    variant: Any, registered: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model label is the real tag whenever a model answered; the requested alias only
    labels requests refused as unavailable (no model to name)."""
    from bentoml.exceptions import ServiceUnavailable
    from prometheus_client import REGISTRY

    def value(model: str, outcome: str) -> float:
        labels = {"model": model, "outcome": outcome}
        return REGISTRY.get_sample_value(m.REQUESTS_TOTAL, labels) or 0.0

    alias = "churn:production"
    keys = [(registered, "ok"), (alias, "ok"), (alias, "unavailable")]
    before = {k: value(*k) for k in keys}
    loaded = variant.loaded
    monkeypatch.setattr(variant, "loaded", None)  # as if still loading
    with pytest.raises(ServiceUnavailable):
        predict(variant, GOOD_ROWS)
    assert value(alias, "unavailable") == before[alias, "unavailable"] + 1

    real_model = variant._model

    def model_after_load() -> Any:  # loading finishes between request start and _model()
        variant.loaded = loaded
        return real_model()

    monkeypatch.setattr(variant, "_model", model_after_load)
    predict(variant, GOOD_ROWS)
    assert value(registered, "ok") == before[registered, "ok"] + 1
    assert value(alias, "ok") == before[alias, "ok"]


def test_not_ready_until_loaded_then_ready(registered: str) -> None:
    """Readiness is false while the loader runs; predict is 503 (ServiceUnavailable) then."""
    from bentoml.exceptions import ServiceUnavailable

    release = threading.Event()

    def slow_loader(tag: str) -> registry.RegisteredModel:
        release.wait(10)
        return registry.load(tag)

    svc = ModelVariant.inner("churn:production", loader=slow_loader)
    assert not svc.__is_ready__() and svc.__is_alive__()
    with pytest.raises(ServiceUnavailable):
        svc._model()
    release.set()
    svc.wait_loaded(30)
    assert svc.__is_ready__() and svc.__is_alive__()


def test_failed_load_is_not_alive(registered: str) -> None:
    svc = ModelVariant.inner("churn:no-such-version")
    with pytest.raises(KubeloopError, match="failed to load"):
        svc.wait_loaded(30)
    assert not svc.__is_ready__() and not svc.__is_alive__()
    assert "no-such-version" in (svc.load_error or "")


class _NativeAbort(BaseException):
    """What a native loader may raise that is not an Exception (cf. SystemExit)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_base_exception_in_loader_is_a_failed_load(registered: str) -> None:
    def loader(tag: str) -> registry.RegisteredModel:
        raise _NativeAbort("segfault-ish")

    svc = ModelVariant.inner("churn:production", loader=loader)
    with pytest.raises(KubeloopError, match="_NativeAbort: segfault-ish"):
        svc.wait_loaded(30)
    svc._thread.join(10)  # its re-raise reaches threading.excepthook inside this test
    assert not svc.__is_ready__() and not svc.__is_alive__()


def test_no_tag_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_TAG_ENV, raising=False)
    with pytest.raises(KubeloopError, match="--arg model="):
        ModelVariant.inner()


# ---------------------------------------------------------------------------- 2. over ASGI


@functools.cache
def asgi_app() -> Any:
    """One ASGI app per process: building a second one re-registers BentoML's own
    prometheus metrics in the global registry (ValueError: Duplicated timeseries)."""
    return ModelVariant.to_asgi()


@pytest.fixture(scope="module")
def client(registered: str) -> Iterator[Any]:
    from starlette.testclient import TestClient

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MODEL_TAG_ENV, "churn:production")
        # `with`: runs the lifespan, which creates the service instance (ModelVariant()).
        with TestClient(asgi_app()) as c:
            deadline = time.monotonic() + 30
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "variant never became ready"
                time.sleep(0.05)
            yield c


def test_asgi_good_rows(client: Any, registered: str) -> None:
    r = client.post("/predict", json={"rows": GOOD_ROWS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body) == len(GOOD_ROWS)
    preds = [Prediction.model_validate(p) for p in body]
    assert all(p.model == registered and p.prediction in ("no", "yes") for p in preds)
    meta = client.post("/metadata", json={})
    assert meta.status_code == 200 and VariantMetadata.model_validate(meta.json()).tag == registered
    assert client.get("/livez").status_code == 200
    # /metrics is checked against `bentoml serve` below: in-process, BentoML's multiprocess
    # metrics client has no PROMETHEUS_MULTIPROC_DIR and the route does not answer.


def test_asgi_concurrent_requests_are_answered_in_order(client: Any) -> None:
    """Requests merged by adaptive batching still get their own rows' answers back."""
    from concurrent.futures import ThreadPoolExecutor

    xs = [float(v) for v in np.linspace(-3, 3, 16)]

    def one(v: float) -> float:
        r = client.post("/predict", json={"rows": [{"x": v, "plan": "pro"}] * 2})
        assert r.status_code == 200, r.text
        probs = [p["probabilities"]["yes"] for p in r.json()]
        assert probs[0] == probs[1]
        return float(probs[0])

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, xs))
    assert got == sorted(got)  # monotone in x: each answer belongs to its own request


MAX_ROWS = 1000
BAD_PAYLOADS: list[tuple[str, Any, str]] = [
    ("extra key", {"rows": [{"x": 1.0, "plan": "pro", "age": 3}]}, "age"),
    ("missing key", {"rows": [{"plan": "pro"}]}, "x"),
    ("string for numeric", {"rows": [{"x": "1.5", "plan": "pro"}]}, "x"),
    ("bool for numeric", {"rows": [{"x": True, "plan": "pro"}]}, "x"),
    ("list for categorical", {"rows": [{"x": 1.0, "plan": ["pro"]}]}, "plan"),
    ("object for categorical", {"rows": [{"x": 1.0, "plan": {"a": 1}}]}, "plan"),
    ("empty list", {"rows": []}, "rows"),
    ("too many rows", {"rows": [{"x": 1.0, "plan": "pro"}] * (MAX_ROWS + 1)}, "rows"),
    ("rows not a list", {"rows": {"x": 1.0}}, "rows"),
    ("row not an object", {"rows": [1.5]}, "rows"),
    ("no rows key", {"data": []}, "rows"),
    ("second row bad", {"rows": [{"x": 1.0, "plan": "a"}, {"x": "?", "plan": "a"}]}, "x"),
]


def _error_text(resp: httpx.Response) -> str:
    return json.dumps(resp.json())


@pytest.mark.parametrize(
    ("case", "payload", "field"), BAD_PAYLOADS, ids=[b[0] for b in BAD_PAYLOADS]
)
def test_asgi_bad_input_is_400_naming_the_field(
    client: Any, case: str, payload: Any, field: str
) -> None:
    r = client.post("/predict", json=payload)
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert field in _error_text(r), (case, r.text)


@pytest.mark.parametrize(
    ("literal", "field"), [("NaN", "x"), ("Infinity", "x"), ("-Infinity", "x")]
)
def test_asgi_non_finite_numbers_are_400(client: Any, literal: str, field: str) -> None:
    body = '{"rows": [{"x": LITERAL, "plan": "pro"}]}'.replace(
        "LITERAL", literal
    )  # not strict JSON
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    # BentoML's parser accepts these literals (as json.loads does): the row model refuses them.
    assert r.status_code == 400, r.text
    assert [(e["type"], e["loc"]) for e in r.json()["detail"]] == [
        ("finite_number", ["rows", 0, field])
    ]


def test_asgi_score_is_lenient_never_500(client: Any) -> None:
    """/score (the batchable inner method) must not fail: a failure would fail every request
    merged into the same batch. Unparseable values are treated as missing and imputed."""
    rows = [{"x": "abc", "plan": {"a": 1}, "zz": 1}, {}]
    r = client.post("/score", json={"rows": rows})
    assert r.status_code == 200, r.text
    assert len(r.json()) == 2


HUGE = 10**400  # overflows float: an OverflowError in clean's to_numeric if it gets through


def test_asgi_score_huge_numbers_are_missing_not_500(client: Any) -> None:
    """A value that cannot become a finite float is treated as missing on /score: the same
    answer as null, and the requests batched with it are unharmed."""
    rows = [{"x": HUGE, "plan": "pro"}, {"x": None, "plan": "pro"}, {"x": 1.0, "plan": HUGE}]
    r = client.post("/score", json={"rows": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body) == 3 and body[0]["probabilities"] == body[1]["probabilities"]


def test_asgi_predict_huge_number_is_400_naming_the_field(client: Any) -> None:
    r = client.post(
        "/predict", json={"rows": [{"x": 1.0, "plan": "pro"}, {"x": HUGE, "plan": "a"}]}
    )
    assert r.status_code == 400, r.text
    assert [e["loc"][1:] for e in r.json()["detail"]] == [[1, "x"]]


def test_asgi_too_many_rows_names_the_limit_once(client: Any) -> None:
    r = client.post("/predict", json={"rows": [{"x": 1.0, "plan": "pro"}] * (MAX_ROWS + 1)})
    assert r.status_code == 400, r.text
    [err] = r.json()["detail"]
    assert err["loc"] == ["rows"] and str(MAX_ROWS) in err["msg"], err
    assert len(r.content) < 1000  # the rows are not echoed back


def test_asgi_error_locates_row_and_field(client: Any) -> None:
    r = client.post(
        "/predict", json={"rows": [{"x": 1.0, "plan": "a"}, {"x": 1.0, "plan": "a", "zip": 1}]}
    )
    assert r.status_code == 400
    assert r.json()["detail"][0]["loc"][1:] == [1, "zip"]


@pytest.mark.parametrize("body", [b"not json", b"", b"[1, 2", b'"rows"', b"null"])
def test_asgi_malformed_body_is_4xx_not_5xx(client: Any, body: bytes) -> None:
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    assert client.post("/predict", json={"rows": GOOD_ROWS[:1]}).status_code == 200


# ---------------------------------------------------------------------------- 3. bentoml serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_bentoml_serve_for_real(registered: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "BENTOML_HOME": os.environ["BENTOML_HOME"], "BENTOML_DO_NOT_TRACK": "1"}
    env.pop(MODEL_TAG_ENV, None)  # the tag must arrive through --arg
    cmd = [
        str(Path(sys.executable).with_name("bentoml")),
        "serve",
        "kubeloop.serving.variant:ModelVariant",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--arg",
        "model=churn:production",
        "--arg",
        "max_batch_size=32",
    ]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not ready in 60 s:\n" + log.read_text()
            time.sleep(0.2)
        good = httpx.post(f"{base}/predict", json={"rows": GOOD_ROWS}, timeout=10)
        assert good.status_code == 200, good.text
        assert [p["model"] for p in good.json()] == [registered] * len(GOOD_ROWS)
        bad = httpx.post(f"{base}/predict", json={"rows": [{"x": "a", "plan": 1}]}, timeout=10)
        assert bad.status_code == 400 and "x" in bad.text, bad.text
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert f'{m.REQUESTS_TOTAL}{{model="{registered}",outcome="ok"}} 1.0' in metrics, metrics
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

"""Fuzz the gateway over HTTP: at least 1,000 malformed payloads, every answer a 4xx with a JSON
error body, never a 5xx, and the service still alive afterwards.

A real `kubeloop serve` gateway (in-process mode, the tiny model, a real Feast SQLite online
store holding entity ids 0 .. 39) on 127.0.0.1; hypothesis generates the payloads: wrong
types, missing and extra fields, NaN/Infinity literals, too many rows, unknown entity ids,
bytes that are not JSON, and content types other than JSON.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeloop.components.register import registry
from tests.serving_env import (
    ENTITIES,
    build_feature_store,
    feature_rows,
    free_port,
    gateway_cmd,
    load,
    serve_env,
    served,
    write_spec,
)
from tests.tiny_model import train_and_register

pytestmark = pytest.mark.xdist_group("gateway_fuzz")

MAX_ROWS = 20  # the fuzzed gateway's serve.max_rows, so "too many rows" stays small
EXAMPLES = 1050


@dataclass(frozen=True)
class Case:
    kind: str
    path: str
    body: bytes
    content_type: str = "application/json"
    expect: int | None = None  # a specific status, else any 4xx


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        registry.set_stage(train_and_register(tmp), "production")
        spec_path = write_spec(tmp / "project", max_rows=MAX_ROWS)
        build_feature_store(load(spec_path), feature_rows())
        port = free_port()
        env = serve_env(str(tmp / "bentoml"))
        with (
            served(gateway_cmd(spec_path, port), port, env, tmp / "gateway.log") as base,
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            yield client


# ---------------------------------------------------------------------------- strategies

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
numbers = st.none() | st.floats(-1e6, 1e6) | st.integers(-(10**6), 10**6)
categories = st.none() | st.text(max_size=10) | st.integers(-100, 100) | st.booleans()
good_rows = st.fixed_dictionaries({"x": numbers, "plan": categories})
not_numbers = (
    st.text()
    | st.booleans()
    | st.lists(json_values, max_size=2)
    | st.dictionaries(st.text(max_size=4), json_values, max_size=2)
)
not_categories = st.lists(json_values, max_size=2) | st.dictionaries(
    st.text(max_size=4), json_values, max_size=2
)
extra_keys = st.text(max_size=12).filter(lambda k: k not in ("x", "plan"))
top_extra_keys = st.text(max_size=12).filter(
    lambda k: k not in ("features", "entity_id", "rows", "entity_ids", "request_id")
)


@st.composite
def bad_rows(draw: st.DrawFn) -> Any:
    row = dict(draw(good_rows))
    how = draw(st.sampled_from(["x type", "plan type", "missing", "extra", "not an object"]))
    if how == "x type":
        row["x"] = draw(not_numbers)
    elif how == "plan type":
        row["plan"] = draw(not_categories)
    elif how == "missing":
        del row[draw(st.sampled_from(["x", "plan"]))]
    elif how == "extra":
        row[draw(extra_keys)] = draw(json_values)
    else:
        return draw(json_values.filter(lambda v: not isinstance(v, dict)))
    return row


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _digits(s: str) -> bool:
    return re.fullmatch(r"\s*[+-]?[0-9]+\s*", s) is not None


unknown_ids = (
    st.integers(ENTITIES, 2**63 - 1)
    | st.integers(-(2**63), -1)
    | st.text(min_size=1, max_size=30).filter(lambda s: not _digits(s))
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    kind = draw(
        st.sampled_from(
            [
                "bad feature row",
                "bad batch row",
                "extra field",
                "missing or conflicting fields",
                "wrong top-level types",
                "NaN/Infinity",
                "too many rows",
                "unknown entity ids",
                "not JSON",
                "wrong content type",
            ]
        )
    )
    rid = draw(st.none() | st.text(min_size=1, max_size=20))
    base: dict[str, Any] = {} if rid is None else {"request_id": rid}
    if kind == "bad feature row":
        return Case(kind, "/predict", _json({**base, "features": draw(bad_rows())}), expect=400)
    if kind == "bad batch row":
        rows = draw(st.lists(good_rows, max_size=MAX_ROWS - 1))
        rows.insert(draw(st.integers(0, len(rows))), draw(bad_rows()))
        return Case(kind, "/predict_batch", _json({**base, "rows": rows}), expect=400)
    if kind == "extra field":
        body = {**base, "features": draw(good_rows), draw(top_extra_keys): draw(json_values)}
        path = "/predict"
        if draw(st.booleans()):
            body = {**base, "rows": [draw(good_rows)], draw(top_extra_keys): draw(json_values)}
            path = "/predict_batch"
        return Case(kind, path, _json(body), expect=400)
    if kind == "missing or conflicting fields":
        path = draw(st.sampled_from(["/predict", "/predict_batch"]))
        options = [
            {},
            base,
            {"features": draw(good_rows), "entity_id": 1},
            {"rows": [draw(good_rows)], "entity_ids": [1]},
            {"rows": []},
            {"entity_ids": []},
            {"features": None, "entity_id": None},
        ]
        return Case(kind, path, _json(draw(st.sampled_from(options))), expect=400)
    if kind == "wrong top-level types":
        field, path, bad = draw(
            st.sampled_from(
                [
                    (
                        "features",
                        "/predict",
                        json_values.filter(lambda v: not isinstance(v, dict) and v is not None),
                    ),
                    (
                        "entity_id",
                        "/predict",
                        st.floats()
                        | st.booleans()
                        | st.lists(st.integers(), max_size=2)
                        | st.just("")
                        | st.integers(2**63),
                    ),
                    (
                        "rows",
                        "/predict_batch",
                        json_values.filter(lambda v: not isinstance(v, list) and v is not None),
                    ),
                    (
                        "entity_ids",
                        "/predict_batch",
                        st.lists(st.floats() | st.booleans() | st.none(), min_size=1, max_size=3),
                    ),
                    (
                        "request_id",
                        "/predict",
                        st.integers()
                        | st.just("")
                        | st.text(min_size=201, max_size=300)
                        | st.booleans(),
                    ),
                ]
            )
        )
        body = {field: draw(bad)}
        if field == "request_id":
            body["features"] = draw(good_rows)
        return Case(kind, path, _json(body), expect=400)
    if kind == "NaN/Infinity":
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        if draw(st.booleans()):
            text = '{"features": {"x": LIT, "plan": "pro"}}'
            return Case(kind, "/predict", text.replace("LIT", literal).encode(), expect=400)
        rows = [json.dumps(r) for r in draw(st.lists(good_rows, max_size=MAX_ROWS - 1))]
        rows.insert(draw(st.integers(0, len(rows))), f'{{"x": {literal}, "plan": "a"}}')
        return Case(kind, "/predict_batch", f'{{"rows": [{", ".join(rows)}]}}'.encode(), expect=400)
    if kind == "too many rows":
        n = draw(st.integers(MAX_ROWS + 1, 10 * MAX_ROWS))
        if draw(st.booleans()):
            body = {"rows": [{"x": 1.0, "plan": "pro"}] * n}
        else:
            body = {"entity_ids": [draw(st.integers(0, ENTITIES - 1))] * n}
        return Case(kind, "/predict_batch", _json(body), expect=400)
    if kind == "unknown entity ids":
        if draw(st.booleans()):
            return Case(
                kind, "/predict", _json({**base, "entity_id": draw(unknown_ids)}), expect=404
            )
        ids = draw(st.lists(st.integers(0, ENTITIES - 1), max_size=5))
        ids.insert(draw(st.integers(0, len(ids))), draw(unknown_ids))
        return Case(kind, "/predict_batch", _json({**base, "entity_ids": ids}), expect=404)
    path = draw(st.sampled_from(["/predict", "/predict_batch"]))
    if kind == "not JSON":
        raw = draw(st.binary(max_size=200).filter(_not_json))
        return Case(kind, path, raw, expect=400)
    # wrong content type: even a well-formed body is refused
    ctype = draw(
        st.sampled_from(
            [
                "text/plain",
                "multipart/form-data; boundary=xyz",
                "application/x-www-form-urlencoded",
                "application/vnd.bentoml+pickle",
                "application/xml",
                "text/csv",
            ]
        )
    )
    body = draw(
        st.sampled_from([_json({"features": {"x": 1.0, "plan": "pro"}}), b"a=1&b=2", b"--xyz\r\n"])
    )
    return Case(kind, path, body, content_type=ctype, expect=415)


def _not_json(raw: bytes) -> bool:
    if not raw.strip():
        return False  # an empty body reads as {} (missing fields): covered above
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return True
    return False


# ---------------------------------------------------------------------------- the test


def test_malformed_payloads_get_a_4xx_with_a_json_error(gateway: httpx.Client) -> None:
    sent: Counter[str] = Counter()  # payloads sent, by kind

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )
    @given(case=cases())
    def check(case: Case) -> None:
        r = gateway.post(case.path, content=case.body, headers={"content-type": case.content_type})
        sent[case.kind] += 1
        assert r.status_code < 500, (case, r.status_code, r.text)
        assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
        if case.expect is not None:
            assert r.status_code == case.expect, (case, r.status_code, r.text)
        body = r.json()  # a JSON body ...
        assert isinstance(body, dict) and (body.get("detail") or body.get("error")), body
        if case.expect == 404:
            assert body["unknown_entity_ids"], body

    check()
    assert sum(sent.values()) >= 1000, sent
    assert len(sent) == 10 and min(sent.values()) >= 20, sent  # every kind, many times
    # The service is still up and still answers good requests.
    assert gateway.get("/livez").status_code == 200
    ok = gateway.post("/predict", json={"features": {"x": 1.0, "plan": "pro"}})
    assert ok.status_code == 200 and ok.json()["variant"] == "stable"
    assert gateway.post("/predict", json={"entity_id": 3}).status_code == 200

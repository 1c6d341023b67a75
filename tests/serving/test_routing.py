"""Sticky hash routing, shadow choice and the persisted routing state."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kubeloop.components.core.errors import KubeloopError
from kubeloop.serving.routing import (
    RoutingState,
    bucket,
    load_state,
    mirrored,
    route,
    route_all,
    save_state,
    state_path,
)

KEYS = [f"user-{i}" for i in range(20_000)]


def test_bucket_is_first_8_bytes_of_sha256_mod_10000() -> None:
    for key in ("a", "user-1", "ünïcode", "42"):
        want = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 10_000
        assert bucket(key) == want


def test_same_key_same_variant() -> None:
    first = route_all(KEYS[:500], 30)
    assert route_all(KEYS[:500], 30) == first
    assert {route(k, 30) for k in KEYS[:500]} == {"stable", "canary"}


@pytest.mark.parametrize("weight", [1, 5, 10, 25, 50, 90])
def test_canary_share_is_near_the_weight(weight: int) -> None:
    share = route_all(KEYS, weight).count("canary") / len(KEYS)
    # 20,000 keys: the binomial standard deviation is at most 0.35 points.
    assert abs(share - weight / 100) < 0.015, share


def test_weight_0_and_100_are_absolute() -> None:
    assert set(route_all(KEYS, 0)) == {"stable"}
    assert set(route_all(KEYS, 100)) == {"canary"}


def test_widening_keeps_canary_users_on_the_canary() -> None:
    """A key on the canary at 5 % stays there at 10 %, 25 %, ...: users never flip back."""
    on_canary = {k for k in KEYS if route(k, 5) == "canary"}
    for w in (10, 25, 50, 100):
        assert on_canary <= {k for k in KEYS if route(k, w) == "canary"}


def test_shadow_choice_has_its_own_bucket() -> None:
    mirrored_keys = [k for k in KEYS if mirrored(k, 20)]
    assert abs(len(mirrored_keys) / len(KEYS) - 0.2) < 0.015
    # Independent of the canary split: about 20 % of the stable keys are mirrored too.
    stable = [k for k in KEYS if route(k, 50) == "stable"]
    share = sum(mirrored(k, 20) for k in stable) / len(stable)
    assert abs(share - 0.2) < 0.02, share
    assert not any(mirrored(k, 0) for k in KEYS[:1000])


def test_state_round_trip(tmp_path: Path) -> None:
    assert load_state(tmp_path) is None
    state = RoutingState(stable="churn:a", canary="churn:b", weight=25.0, phase="paused")
    save_state(tmp_path, state)
    assert load_state(tmp_path) == state
    assert json.loads(state_path(tmp_path).read_text())["weight"] == 25.0
    assert [p.name for p in tmp_path.iterdir()] == ["gateway.json"]  # no temp file left


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"weight": "x"}', '{"phase": "exploded"}', '{"weight": 150}'],
)
def test_damaged_state_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    state_path(tmp_path).write_text(text)
    with pytest.raises(KubeloopError, match=r"gateway\.json"):
        load_state(tmp_path)

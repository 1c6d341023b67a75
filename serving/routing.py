"""Which variant answers a row: sticky hash routing, shadow choice, and the persisted state.

Every row has a key: its entity id when the request names one, else the request id. The key's
bucket (first 8 bytes of its SHA-256 as an unsigned big-endian int, modulo 10,000) is fixed,
so the same key always lands on the same side of a weight, and a key on the canary at 5 %
stays on it at 10 % (buckets below 500 are also below 1,000): users do not flip back and forth
as a rollout widens. Shadow mirroring draws from its own bucket (the key salted), so the
mirrored share of stable traffic does not depend on the canary weight.

The routing state (stable tag, canary tag, weight, phase) is written atomically to
``<spec.rollouts_dir>/gateway.json`` on every change and read back at start-up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import write_text_atomic

BUCKETS = 10_000
SHADOW_SALT = "shadow:"

Slot = Literal["stable", "canary"]
Phase = Literal["stable", "progressing", "paused", "promoted", "rolled_back", "failed"]
PHASES: tuple[Phase, ...] = get_args(Phase)
STATE_FILE = "gateway.json"


def bucket(key: str) -> int:
    """0 .. 9,999, fixed for a key."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def _below(key: str, percent: float) -> bool:
    # percent * 100 buckets: 0 % never, 100 % always, 0.01 % steps in between.
    return bucket(key) < round(percent * (BUCKETS // 100))


def route(key: str, canary_percent: float) -> Slot:
    """The variant for one row's key at this canary weight (percent, 0 .. 100)."""
    return "canary" if _below(key, canary_percent) else "stable"


def route_all(keys: Sequence[str], canary_percent: float) -> list[Slot]:
    return [route(k, canary_percent) for k in keys]


def mirrored(key: str, shadow_percent: float) -> bool:
    """Whether a stable-routed row is also sent to the canary (shadow traffic)."""
    return _below(SHADOW_SALT + key, shadow_percent)


@dataclass(frozen=True)
class RoutingState:
    """What the gateway serves, and what it restores after a restart."""

    stable: str | None  # tag (or stage alias) of the stable model
    canary: str | None = None
    weight: float = 0.0  # canary share in percent
    phase: Phase = "stable"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def state_path(rollouts_dir: str | Path) -> Path:
    return Path(rollouts_dir) / STATE_FILE


def save_state(rollouts_dir: str | Path, state: RoutingState) -> None:
    write_text_atomic(state_path(rollouts_dir), state.to_json())


def load_state(rollouts_dir: str | Path) -> RoutingState | None:
    """The persisted state, None when there is none; a damaged file is an error naming it."""
    path = state_path(rollouts_dir)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        state = RoutingState(
            stable=raw.get("stable"),
            canary=raw.get("canary"),
            weight=float(raw.get("weight", 0.0)),
            phase=raw.get("phase", "stable"),
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise KubeloopError(
            f"{path}: not a gateway routing state ({err}); fix or delete the file"
        ) from None
    if state.phase not in PHASES or not 0.0 <= state.weight <= 100.0:
        raise KubeloopError(
            f"{path}: phase must be one of {list(PHASES)} and weight within 0..100, "
            f"got phase={state.phase!r} weight={state.weight}; fix or delete the file"
        )
    return state

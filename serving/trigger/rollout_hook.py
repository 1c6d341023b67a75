"""The hook between the trigger and the canary controller.

When the retrained model passes the gate, the trigger calls the rollout controller's start
function — what ``kubeloop rollout start --no-wait`` runs — with the spec and the new
model's tag. The controller lives in :mod:`kubeloop.serving.rollout`; this module finds its
start function there by one agreed name, so the trigger needs no change when it appears.
Until then the trigger records "gate passed, no rollout started" and says how to start it.
"""

from __future__ import annotations

import importlib
from typing import Any

from kubeloop.components.core.spec import Spec
from kubeloop.serving.trigger.trigger import RolloutStarter

# The canary controller's entry point: start_rollout(spec, candidate) -> dict (no waiting).
ROLLOUT_MODULE = "kubeloop.serving.rollout.controller"
ROLLOUT_FUNCTION = "start_rollout"


def default_rollout_starter() -> RolloutStarter | None:
    """The controller's start function, or None while the rollout package lacks it."""
    try:
        module = importlib.import_module(ROLLOUT_MODULE)
    except ModuleNotFoundError:
        return None
    start = getattr(module, ROLLOUT_FUNCTION, None)
    if start is None:
        return None

    def starter(spec: Spec, candidate: str) -> dict[str, Any]:
        info = start(spec, candidate)
        return info if isinstance(info, dict) else {"result": str(info)}

    return starter

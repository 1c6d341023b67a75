"""The hook between the trigger and the canary controller.

When the retrained model passes the gate, the trigger starts a canary rollout of it and
does not wait for the rollout (the controller's own loop drives it step by step):

* if :mod:`kubeloop.serving.rollout.controller` offers ``start_rollout(spec, candidate)``
  (what ``kubeloop rollout start --no-wait`` runs), that is called;
* otherwise the controller's :meth:`Controller.start` is called directly, as
  ``kubeloop rollout start --no-wait`` does: the gateway's admin API at
  ``serve.host:serve.port`` (token from ``serve.admin_token_env``) and Prometheus at
  ``monitor.prometheus_url``, unless URLs are given.

Whatever stops the start (no gateway, no Prometheus, a rollout already in progress) ends the
request as ``rollout_failed`` with the controller's message in the decision record.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from kubeloop.components.core.spec import Spec
from kubeloop.serving.trigger.trigger import RolloutStarter

ROLLOUT_MODULE = "kubeloop.serving.rollout.controller"
ROLLOUT_FUNCTION = "start_rollout"  # start_rollout(spec, candidate) -> dict, no waiting


def start_with_controller(
    spec: Spec,
    candidate: str,
    *,
    gateway_url: str | None = None,
    prometheus_url: str | None = None,
) -> dict[str, Any]:
    """Start the rollout through the canary controller, as ``kubeloop rollout start
    --no-wait`` does (its state goes to ``spec.rollouts_dir``, where the controller's loop
    picks it up)."""
    from kubeloop.serving.rollout.controller import Controller
    from kubeloop.serving.rollout.gateway_client import GatewayClient
    from kubeloop.serving.rollout.prometheus import PrometheusClient

    gateway_url = gateway_url or f"http://{spec.serve.host}:{spec.serve.port}"
    gateway = GatewayClient(gateway_url, spec.serve.admin_token_env)
    prometheus = PrometheusClient(prometheus_url or spec.monitor.prometheus_url)
    try:
        state = Controller(spec, gateway=gateway, prometheus=prometheus).start(candidate)
    finally:
        gateway.close()
        prometheus.close()
    return {
        "rollout_id": state.rollout_id,
        "stable": state.stable,
        "canary": state.canary,
        "weight": state.weight,
        "phase": state.phase,
        "gateway": gateway_url,
    }


def default_rollout_starter(
    gateway_url: str | None = None, prometheus_url: str | None = None
) -> RolloutStarter | None:
    """The rollout package's start function, else the controller; None without either.
    The URLs override ``serve.host:serve.port`` and ``monitor.prometheus_url``."""
    try:
        module = importlib.import_module(ROLLOUT_MODULE)
    except ModuleNotFoundError:
        return None
    start = getattr(module, ROLLOUT_FUNCTION, None)
    if start is None:
        if not hasattr(module, "Controller"):
            return None
        return functools.partial(
            start_with_controller, gateway_url=gateway_url, prometheus_url=prometheus_url
        )

    def starter(spec: Spec, candidate: str) -> dict[str, Any]:
        info = start(spec, candidate)
        return info if isinstance(info, dict) else {"result": str(info)}

    return starter

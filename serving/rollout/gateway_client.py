"""The controller's only way to the gateway: its admin API, over HTTP (httpx).

The bearer token is read from the environment variable named by ``serve.admin_token_env``
when the client is built. Failures fall in two kinds:

* :class:`GatewayUnavailable`: unreachable, timeout, 5xx (503 while its stable model loads):
  the controller holds and retries on its next tick;
* :class:`GatewayRefused`: the gateway answered 4xx (401 wrong token, 409 incompatible canary
  or no canary loaded): the message is the gateway's own.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import httpx

from kubeloop.components.core.errors import KubeloopError

DEFAULT_TIMEOUT_S = 10.0
# Loading a canary can take a while (the gateway waits for the model before answering).
CANARY_TIMEOUT_S = 330.0


class GatewayUnavailable(KubeloopError):
    """The gateway cannot answer right now; retry later."""


class GatewayRefused(KubeloopError):
    """The gateway refused an admin call (4xx); `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class GatewayAdmin(Protocol):
    """The admin API as the controller uses it; each call returns the gateway's status."""

    def status(self) -> dict[str, Any]: ...

    def set_canary(self, model: str) -> dict[str, Any]: ...

    def set_weights(self, canary: float, phase: str | None = None) -> dict[str, Any]: ...

    def promote(self) -> dict[str, Any]: ...

    def rollback(self) -> dict[str, Any]: ...


class GatewayClient:
    """HTTP client for ``/admin/*`` of one gateway."""

    def __init__(
        self,
        url: str,
        token_env: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        token = os.environ.get(token_env, "")
        if not token:
            raise KubeloopError(
                f"the environment variable {token_env} (serve.admin_token_env) is not set: "
                "export the gateway's admin token in it before running the rollout controller"
            )
        self.url = url.rstrip("/")
        self.token_env = token_env
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 0
    ) -> dict[str, Any]:
        where = f"{self.url}/admin{path}"
        try:
            reply = self._http.request(
                method, f"/admin{path}", json=body, timeout=timeout or self.timeout_s
            )
        except httpx.HTTPError as err:
            raise GatewayUnavailable(
                f"gateway {where} is unreachable ({type(err).__name__}: {err})"
            ) from err
        try:
            payload = reply.json()
        except ValueError:
            payload = None
        detail = payload.get("detail") if isinstance(payload, dict) else reply.text[:300]
        if reply.status_code >= 500:
            raise GatewayUnavailable(f"gateway {where} answered {reply.status_code}: {detail}")
        if reply.status_code == 401:
            raise GatewayRefused(
                401, f"gateway {where} refused the admin token from {self.token_env}: {detail}"
            )
        if reply.status_code >= 400:
            raise GatewayRefused(
                reply.status_code, f"gateway {where} answered {reply.status_code}: {detail}"
            )
        if not isinstance(payload, dict):
            raise GatewayUnavailable(f"gateway {where} answered a non-JSON-object body")
        return payload

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def set_canary(self, model: str) -> dict[str, Any]:
        return self._call("POST", "/canary", {"model": model}, timeout=CANARY_TIMEOUT_S)

    def set_weights(self, canary: float, phase: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"canary": canary}
        if phase is not None:
            body["phase"] = phase
        return self._call("POST", "/weights", body)

    def promote(self) -> dict[str, Any]:
        return self._call("POST", "/promote")

    def rollback(self) -> dict[str, Any]:
        return self._call("POST", "/rollback")


def canary_model(status: dict[str, Any]) -> str | None:
    """The canary tag a gateway status reports (None when no canary is loaded)."""
    canary = status.get("canary")
    return canary.get("model") if isinstance(canary, dict) else None


def stable_model(status: dict[str, Any]) -> str | None:
    stable = status.get("stable")
    return stable.get("model") if isinstance(stable, dict) else None


def canary_weight(status: dict[str, Any]) -> float:
    weights = status.get("weights")
    return float(weights.get("canary", 0.0)) if isinstance(weights, dict) else 0.0

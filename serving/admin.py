"""The gateway's admin API (mounted at ``/admin``), behind a bearer token.

The token is read from the environment variable named by ``serve.admin_token_env`` (default
``KUBELOOP_ADMIN_TOKEN``) on every call, so a rotated secret takes effect without a restart.
With the variable unset every admin call is refused (401) with a message saying how to enable
the API: an admin API open to anyone who can reach the gateway is never the default.

    GET  /admin/status                                   -> routing status
    POST /admin/canary   {"model": "churn:v2"}           -> load the canary at weight 0
    POST /admin/weights  {"canary": 10, "phase": "progressing"}
    POST /admin/promote                                  -> canary becomes stable
    POST /admin/rollback                                 -> weight 0, canary unloaded

Errors are JSON: 400 for a malformed body (``detail[].loc`` names the field), 401 for a
missing or wrong token, 409 when the request conflicts with the gateway's state (no canary,
incompatible canary), 503 while no stable model is ready.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubeloop.components.core.errors import KubeloopError
from kubeloop.serving.routing import Phase


class AdminError(KubeloopError):
    """An admin request the gateway refuses; `status` is the HTTP status (409, 503, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CanaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=300, description="Tag or stage alias to load.")


class WeightsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    canary: float = Field(ge=0, le=100, allow_inf_nan=False, description="Canary percent.")
    phase: Phase | None = Field(default=None, description="New rollout phase (default: kept).")


class AdminTarget(Protocol):
    """What the admin API drives (the gateway)."""

    admin_token_env: str

    def status(self) -> dict[str, Any]: ...

    async def set_canary(self, model: str) -> dict[str, Any]: ...

    async def set_weights(self, canary: float, phase: Phase | None) -> dict[str, Any]: ...

    async def promote(self) -> dict[str, Any]: ...

    async def rollback(self) -> dict[str, Any]: ...


def _json_error(status: int, detail: Any, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def check_token(request: Request, env_name: str) -> JSONResponse | None:
    """None when the bearer token matches ``$env_name``, else the 401 answer."""
    expected = os.environ.get(env_name)
    if not expected:
        return _json_error(
            401,
            f"the admin API is disabled: set the environment variable {env_name} to a secret "
            "token before starting the gateway, then send `Authorization: Bearer <token>`",
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return _json_error(401, "missing bearer token: send `Authorization: Bearer <token>`")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return _json_error(401, "wrong bearer token")
    return None


Handler = Callable[[AdminTarget, Request], Awaitable[dict[str, Any]]]


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    return model.model_validate_json(raw or b"{}")


async def _status(target: AdminTarget, request: Request) -> dict[str, Any]:
    return target.status()


async def _canary(target: AdminTarget, request: Request) -> dict[str, Any]:
    body: CanaryRequest = await _body(request, CanaryRequest)
    return await target.set_canary(body.model)


async def _weights(target: AdminTarget, request: Request) -> dict[str, Any]:
    body: WeightsRequest = await _body(request, WeightsRequest)
    return await target.set_weights(body.canary, body.phase)


async def _promote(target: AdminTarget, request: Request) -> dict[str, Any]:
    return await target.promote()


async def _rollback(target: AdminTarget, request: Request) -> dict[str, Any]:
    return await target.rollback()


def build_admin_app(get_target: Callable[[], AdminTarget]) -> Starlette:
    """The admin ASGI app; `get_target` returns the gateway instance at request time."""

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            target = get_target()
            refused = check_token(request, target.admin_token_env)
            if refused is not None:
                return refused
            try:
                return JSONResponse(await handler(target, request))
            except ValidationError as err:
                detail = err.errors(include_context=False, include_input=False, include_url=False)
                return JSONResponse(
                    {"error": f"invalid {request.url.path} body", "detail": detail},
                    status_code=400,
                )
            except AdminError as err:
                return _json_error(err.status, str(err))

        return run

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _json_error(exc.status_code, exc.detail)

    routes = [
        Route("/status", endpoint(_status), methods=["GET"]),
        Route("/canary", endpoint(_canary), methods=["POST"]),
        Route("/weights", endpoint(_weights), methods=["POST"]),
        Route("/promote", endpoint(_promote), methods=["POST"]),
        Route("/rollback", endpoint(_rollback), methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})

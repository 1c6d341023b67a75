"""The trigger's HTTP face: a small Starlette app served by uvicorn.

Starlette rather than a BentoML service: the trigger holds no model and needs none of
BentoML's workers, batching or runner processes; one process with one worker thread keeps
the dedupe/cooldown state in a single place, and the webhook needs plain JSON routes with
exact 4xx bodies. Both come installed with BentoML.

    POST /alerts    Alertmanager webhook (v4 payload) -> 200 {"result", "request_id"}
                    bad JSON or payload -> 400 {"error", "details": [{"field", "error"}]}
    GET  /status    policy, cooldown and budget left, pending and recent requests
    GET  /metrics   Prometheus exposition of the trigger's registry
    GET  /healthz   200 while the worker runs
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubeloop.serving.trigger.trigger import RetrainTrigger
from kubeloop.serving.trigger.webhook import WebhookPayload, payload_errors

MAX_BODY_BYTES = 4 * 1024 * 1024  # Alertmanager's own notifications stay far below this


def create_app(trigger: RetrainTrigger) -> Starlette:
    """The ASGI app; its lifespan starts and stops the trigger's worker."""

    def bad_request(status: int, error: str, details: list[dict[str, str]] | None = None) -> Any:
        trigger.count_invalid()
        return JSONResponse({"error": error, "details": details or []}, status_code=status)

    async def alerts(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return bad_request(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            raw = json.loads(body)
        except ValueError as err:
            return bad_request(400, f"body is not JSON: {err}")
        try:
            payload = WebhookPayload.model_validate(raw)
        except ValidationError as err:
            return bad_request(
                400,
                "not an Alertmanager webhook payload (version 4) with at least one alert",
                payload_errors(err),
            )
        result, request_id = await run_in_threadpool(trigger.notify, payload)
        return JSONResponse({"result": result, "request_id": request_id})

    async def status(_: Request) -> Response:
        return JSONResponse(await run_in_threadpool(trigger.status))

    async def metrics(_: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(trigger.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        alive = trigger.alive()
        return JSONResponse({"ok": alive}, status_code=200 if alive else 503)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        trigger.start()
        try:
            yield
        finally:
            await run_in_threadpool(trigger.stop, 5.0)

    return Starlette(
        routes=[
            Route("/alerts", alerts, methods=["POST"]),
            Route("/status", status, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )

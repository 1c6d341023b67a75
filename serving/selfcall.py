"""Calls through BentoML's clients: a service's self-proxy (``self.to_async``, how requests
reach a batchable endpoint) and the gateway's ``bentoml.AsyncHTTPClient`` to variants.

BentoML 1.4.40's client ``SessionManager`` replaces its aiohttp session every 100 requests
(or 5 minutes) and closes the old one with requests still in flight on it; those fail with
``ClientOSError`` / ``ClientConnectionResetError`` ("Cannot write to closing transport") or
``ServerDisconnectedError``. Under 64 concurrent clients a third of the requests to a
variant service failed that way. Scoring has no side effects, so a call that lost its
connection is sent again (on the new session) instead of failing a user request -- and, for
a canary, its success rate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

logger = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 3


async def call_self(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, sent again (at most ATTEMPTS in all) while its connection is lost under it."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call()
        except aiohttp.ClientConnectionError as err:
            if attempt == ATTEMPTS:
                raise
            logger.info("connection lost under a scoring call (%s); sending it again", err)
    raise AssertionError("unreachable")

"""Calls a BentoML service makes to its own batchable endpoints (``self.to_async``).

BentoML's self-proxy keeps aiohttp keep-alive connections to its own server. Under load a
connection the server is closing at that moment gets reused and the call fails with
``ServerDisconnectedError`` after the server already answered it. Scoring has no side
effects, so such a call is sent once more (on another connection) instead of failing a
user request -- and, for a canary, its success rate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def call_self(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, repeated once if the self-proxy's connection was dropped under it."""
    try:
        return await call()
    except aiohttp.ServerDisconnectedError:
        logger.warning("self-call: connection dropped by the server; sending it again")
        return await call()

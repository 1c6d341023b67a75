"""Calls a BentoML service makes to its own batchable endpoints (``self.to_async``).

BentoML 1.4.40's self-proxy client (an aiohttp session behind its ``SessionManager``)
replaces its session every 100 requests (or 5 minutes) and closes the old one with requests
still in flight on it; those fail with ``ClientOSError`` / ``ClientConnectionResetError``
("Cannot write to closing transport") or ``ServerDisconnectedError``. Under 64 concurrent
clients a third of the requests to a variant service failed that way. Scoring has no side
effects, so a call that lost its connection is sent again (on the new session) instead of
failing a user request -- and, for a canary, its success rate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

logger = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 3
# A connection lost under a call. Not ClientConnectorError (a subclass of ClientOSError):
# nothing was sent because nothing answers, and sending again would not help.
LOST = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientConnectionResetError)


async def call_self(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, sent again (at most ATTEMPTS in all) while its connection is lost under it."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call()
        except LOST as err:
            if attempt == ATTEMPTS or isinstance(err, aiohttp.ClientConnectorError):
                raise
            logger.info("connection lost under a scoring call (%s); sending it again", err)
    raise AssertionError("unreachable")

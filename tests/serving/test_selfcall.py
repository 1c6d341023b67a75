"""A scoring call whose connection was lost under it is sent again, a few times at most."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from kubeloop.serving.selfcall import ATTEMPTS, call_self


def calls(*outcomes: object) -> tuple[list[int], Callable[[], Awaitable[object]]]:
    made: list[int] = []

    async def call() -> object:
        made.append(1)
        outcome = outcomes[len(made) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return made, call


def test_lost_connections_are_retried() -> None:
    made, call = calls(aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(), "scored")
    assert asyncio.run(call_self(call)) == "scored"
    assert len(made) == 3


def test_the_last_attempt_and_other_errors_are_not_hidden() -> None:
    lost = [aiohttp.ClientConnectionResetError() for _ in range(ATTEMPTS)]
    made, call = calls(*lost, "never")
    with pytest.raises(aiohttp.ClientConnectionResetError):
        asyncio.run(call_self(call))
    assert len(made) == ATTEMPTS
    made, call = calls(ValueError("bad rows"), "never")
    with pytest.raises(ValueError, match="bad rows"):
        asyncio.run(call_self(call))
    assert len(made) == 1
    no_key: Any = None  # the connection key only names the host in messages
    refused = aiohttp.ClientConnectorError(no_key, OSError(111, "refused"))
    made, call = calls(refused, "never")
    with pytest.raises(aiohttp.ClientConnectorError):
        asyncio.run(call_self(call))
    assert len(made) == 1  # nothing answers: not sent again

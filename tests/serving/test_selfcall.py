"""A self-call whose keep-alive connection the server dropped is sent once more."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from kubeloop.serving.selfcall import call_self


def calls(*outcomes: object) -> tuple[list[int], Callable[[], Awaitable[object]]]:
    made: list[int] = []

    async def call() -> object:
        made.append(1)
        outcome = outcomes[len(made) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return made, call


def test_a_dropped_connection_is_retried_once() -> None:
    made, call = calls(aiohttp.ServerDisconnectedError(), "scored")
    assert asyncio.run(call_self(call)) == "scored"
    assert len(made) == 2


def test_a_second_drop_and_other_errors_are_not_hidden() -> None:
    made, call = calls(aiohttp.ServerDisconnectedError(), aiohttp.ServerDisconnectedError())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        asyncio.run(call_self(call))
    assert len(made) == 2
    made, call = calls(ValueError("bad rows"), "never")
    with pytest.raises(ValueError, match="bad rows"):
        asyncio.run(call_self(call))
    assert len(made) == 1

"""/readyz's dependency checks answer within their budget, whatever the dependency does."""

from __future__ import annotations

import asyncio

import pytest

from shared.runtime.service import Check

pytestmark = pytest.mark.unit


class Dependency:
    """A dependency whose calls hang until `answer()`, like a query on a blackholed connection:
    cancelling such a call does not end it either (the cancel request itself hangs)."""

    def __init__(self) -> None:
        self.calls = 0
        self._answered = asyncio.Event()

    async def call(self) -> bool:
        self.calls += 1
        waiting = asyncio.ensure_future(self._answered.wait())
        while not waiting.done():  # swallows cancellation, as a call stuck on the network does
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:
                continue
        return True

    def answer(self) -> None:
        self._answered.set()


async def answer_within(check: Check, seconds: float = 1.0) -> bool:
    """The check's answer; fails (rather than hang with it) when none comes in time."""
    asking = asyncio.ensure_future(check())
    done, _ = await asyncio.wait({asking}, timeout=seconds)
    assert done, f"no answer within {seconds} s"
    return asking.result()


async def test_a_hanging_dependency_is_not_ready_within_the_budget() -> None:
    dependency = Dependency()
    check = Check(dependency.call, timeout=0.05)

    assert await answer_within(check) is False
    assert await answer_within(check) is False
    assert dependency.calls == 1  # the next check waits on the call still running

    dependency.answer()
    await asyncio.sleep(0)
    assert await answer_within(check) is True


async def test_a_failing_dependency_is_not_ready() -> None:
    async def refused() -> bool:
        raise ConnectionRefusedError("connection refused")

    assert await Check(refused, timeout=1.0)() is False


async def test_a_dependency_that_answers_is_ready() -> None:
    async def answers() -> bool:
        return True

    assert await Check(answers, timeout=1.0)() is True

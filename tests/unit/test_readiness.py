"""``Readiness``: probes cost nothing (one bounded round of checks a second, shared by concurrent probes) and
a reason never carries what an exception's message might (a host, a URL, a password)."""

from __future__ import annotations

import asyncio

import pytest

from llm_gateway.readiness import NotReady, Readiness


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingCheck:
    def __init__(self, *, fails: BaseException | None = None, delay: float = 0.0) -> None:
        self.calls = 0
        self.fails = fails
        self.delay = delay

    async def __call__(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fails is not None:
            raise self.fails


async def test_ready_is_no_failures_and_concurrent_probes_share_one_round() -> None:
    clock, database = Clock(), CountingCheck(delay=0.05)
    readiness = Readiness({"database": database}, clock=clock)
    results = await asyncio.gather(*(readiness.failures() for _ in range(20)))
    assert results == [{}] * 20
    assert database.calls == 1


async def test_a_round_is_kept_for_the_cache_period() -> None:
    clock, database = Clock(), CountingCheck()
    readiness = Readiness({"database": database}, cache_seconds=1.0, clock=clock)
    await readiness.failures()
    clock.now = 0.9
    await readiness.failures()
    assert database.calls == 1
    clock.now = 1.0
    await readiness.failures()
    assert database.calls == 2


async def test_reasons_name_the_exception_type_or_the_checks_own_words_never_its_message() -> None:
    secret = ConnectionRefusedError("connect to postgresql://admin:hunter2@db.internal:5432 failed")
    readiness = Readiness(
        {
            "database": CountingCheck(fails=NotReady("not reached yet (connecting in the background)")),
            "redis": CountingCheck(fails=secret),
            "fine": CountingCheck(),
        }
    )
    assert await readiness.failures() == {
        "database": "not reached yet (connecting in the background)",
        "redis": "unreachable (ConnectionRefusedError)",
    }


async def test_a_check_that_hangs_is_bounded_and_never_started_twice() -> None:
    clock, hanging = Clock(), CountingCheck(delay=3600)
    readiness = Readiness({"redis": hanging}, timeout=0.05, cache_seconds=1.0, clock=clock)
    assert await readiness.failures() == {"redis": "no answer within 0.05 s"}
    clock.now = 5.0
    assert await asyncio.wait_for(readiness.failures(), 1.0) == {"redis": "no answer within 0.05 s"}
    assert hanging.calls == 1  # the first is still running: waited on again, not piled up
    await readiness.aclose()


async def test_a_probe_that_hangs_up_does_not_cancel_the_round_others_wait_for() -> None:
    database = CountingCheck(delay=0.1)
    readiness = Readiness({"database": database})
    first = asyncio.create_task(readiness.failures())
    second = asyncio.create_task(readiness.failures())
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == {}
    with pytest.raises(asyncio.CancelledError):
        await first
    assert database.calls == 1

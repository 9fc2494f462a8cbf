"""The response cache in the shared mode, through the gateway: one gateway's answer is another's hit, and a
Redis that goes away mid-test costs a miss within the cache's timeout, then nothing, until it comes back.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cache_support import (
    MESSAGES,
    Caller,
    MakeCaller,
    caller_pool,
    chunks,
    redis_env,
    response_cache,
    wait_for_entries,
)
from tests.conftest import StartGateway
from tests.fakes import FakeProvider, Reply
from tests.services import RedisServer

pytestmark = pytest.mark.integration

BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}
CACHE_TIMEOUT = 0.05
OPEN_SECONDS = 1.5
# What a failing cache may add to one request: its timeout, plus scheduling slack on a busy CI machine.
FAILURE_BOUND = 0.2


@pytest.fixture
def callers() -> Iterator[MakeCaller]:
    with caller_pool() as make:
        yield make


def test_an_answer_cached_by_one_gateway_is_a_hit_on_another(
    start_gateway: StartGateway,
    fake_env: dict[str, str],
    redis_url: str,
    fakes: dict[str, FakeProvider],
    callers: MakeCaller,
) -> None:
    """Two gateways on one Redis (and one database, so one API key works on both), as behind a load balancer."""
    env = {**fake_env, **redis_env(redis_url)}
    first_gateway, second_gateway = start_gateway(env), start_gateway(env)
    on_first = callers(first_gateway)
    on_second = Caller(second_gateway, on_first.key)
    try:
        headers, answer = on_first.create(**BODY)
        assert headers["x-gateway-cache"] == "miss"
        headers, again = on_second.create(**BODY)
        assert (headers["x-gateway-cache"], again, fakes["openai"].count) == ("hit", answer, 1)

        response, payloads = on_second.stream(BODY)
        assert response.headers["x-gateway-cache"] == "hit"
        assert {c["id"] for c in chunks(payloads)} == {answer["id"]}

        # and the other way round, for an answer that was streamed
        other = {**BODY, "messages": [{"role": "user", "content": "Count to four."}]}
        fakes["openai"].push(Reply("one two three four", chunks=4))
        response, _ = on_second.stream(other)
        assert response.headers["x-gateway-cache"] == "miss"
        wait_for_entries(second_gateway, 2)  # stored once the stream has ended
        headers, answer = on_first.create(**other)
        assert (headers["x-gateway-cache"], answer["choices"][0]["message"]["content"]) == ("hit", "one two three four")
        assert fakes["openai"].count == 2
    finally:
        on_second.close()


def cache_errors(gateway_url: str) -> float:
    """The sum of ``llm_gateway_cache_errors_total`` over its labels, from ``/metrics``."""
    text = httpx.get(f"{gateway_url}/metrics").text
    return sum(float(value) for value in re.findall(r"^llm_gateway_cache_errors_total\{[^}]*\} (\S+)$", text, re.M))


def test_a_stopped_redis_makes_the_cache_miss_quickly_then_recovers(
    start_gateway: StartGateway,
    fake_env: dict[str, str],
    throwaway_redis: RedisServer,
    fakes: dict[str, FakeProvider],
    callers: MakeCaller,
) -> None:
    env = {
        **fake_env,
        "REDIS_URL": throwaway_redis.url,
        "REDIS_PREFIX": "e2e:",
        # One REDIS_URL serves the limits too, and they fail closed by default (503 while Redis is down: a
        # budget must hold). Opening them lets this test see what the cache alone does to a request.
        "LIMITS_ON_REDIS_ERROR": "open",
        "CACHE_REDIS_TIMEOUT_SECONDS": str(CACHE_TIMEOUT),
        "CACHE_REDIS_OPEN_SECONDS": str(OPEN_SECONDS),
    }
    gateway = start_gateway(env)
    alice = callers(gateway)
    cache = response_cache(gateway)
    upstream = fakes["openai"]
    answered_upstream = 0

    def ask(text: str) -> tuple[str, float]:
        nonlocal answered_upstream
        started = time.perf_counter()
        headers, answer = alice.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        elapsed = time.perf_counter() - started
        assert answer["choices"][0]["message"]["content"] == "Hello from openai"
        status: str = headers["x-gateway-cache"]
        answered_upstream += status != "hit"
        return status, elapsed

    for i in range(3):  # warm up: connections, tokenizer, key lookup
        ask(f"warm-up {i}")
    before = [ask(f"question {i}") for i in range(10)]
    assert {status for status, _ in before} == {"miss"}
    assert ask("question 0")[0] == "hit"
    slowest_before = max(seconds for _, seconds in before)

    throwaway_redis.stop()
    stopped = time.monotonic()
    status, first = ask("question 0")  # cached, but Redis is gone: a miss, served by the upstream
    assert status == "miss" and first < slowest_before + FAILURE_BOUND
    assert cache.circuit_open and cache.errors >= 1
    errors = cache.errors

    # While the circuit is open Redis is not tried at all: no request pays even the connection refusal.
    during = [ask(f"question {i}") for i in range(1, 11)]
    if time.monotonic() - stopped < OPEN_SECONDS:  # (a machine so slow that the period ran out proves nothing)
        assert cache.errors == errors
    assert {status for status, _ in during} == {"miss"}
    assert max(seconds for _, seconds in during) < slowest_before + FAILURE_BOUND
    # the typical request pays not even one cache timeout
    assert statistics.median(s for _, s in during) < statistics.median(s for _, s in before) + CACHE_TIMEOUT
    assert cache_errors(gateway.base_url) >= 1  # counted where operators look

    throwaway_redis.start()  # same port, empty
    deadline = time.monotonic() + OPEN_SECONDS + 10
    while ask("after the outage")[0] != "hit":  # the first call after the open period probes; then it stores
        assert time.monotonic() < deadline, f"the cache did not recover; errors: {cache.errors}"
        time.sleep(0.1)
    assert not cache.circuit_open
    assert upstream.count == answered_upstream

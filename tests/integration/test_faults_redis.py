"""Redis stalled, stopped and restarted under a running gateway: bounded answers, then limits that hold again.

The gateway runs the shared shape against a private ``redis-server`` (``throwaway_redis``), which the
tests freeze (SIGSTOP), stop and start again on the same port; a restarted Redis has lost every counter.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import pytest

from tests.fakes import FakeProvider
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.services import RedisServer

pytestmark = pytest.mark.integration

# LIMITS_REDIS_TIMEOUT_SECONDS is 0.5 and CACHE_REDIS_TIMEOUT_SECONDS 0.05: an answer within this
# long proves the request was not left waiting on Redis.
BOUND_SECONDS = 2.0
RECOVERY_SECONDS = 10.0
USAGE_PER_REQUEST = 18  # the fakes report 11 prompt + 7 completion tokens
MESSAGES = [{"role": "user", "content": "Say hello."}]


def chat(gateway: GatewayServer, key: str, *, stream: bool = False, charged: list[int] | None = None) -> httpx.Response:
    """One request (same body every time, so every admission reserves the same tokens), timed.

    ``charged`` counts the answers that cost tokens (served, not from the cache).
    """
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}
    if stream:
        body["stream"] = True
    started = time.monotonic()
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=20
    )
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_SECONDS, f"{elapsed:.2f} s: the request waited on Redis"
    if charged is not None and response.status_code == 200 and response.headers["x-gateway-cache"] != "hit":
        charged.append(1)
    return response


def remaining_tokens(response: httpx.Response) -> int:
    return int(response.headers["x-ratelimit-remaining-tokens"])


def assert_refused_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"


def first_success_after_restart(gateway: GatewayServer, key: str) -> httpx.Response:
    """Redis is back: the clients reconnect on their next call; only 503 is allowed meanwhile."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while (response := chat(gateway, key)).status_code != 200:  # the header is the admission's: before charging
        assert_refused_503(response)
        assert time.monotonic() < deadline, "limits did not come back with Redis"
        time.sleep(0.1)
    return response


def successes_until_rate_limited(gateway: GatewayServer, key: str, most: int) -> int:
    """Requests answered before the first 429 ``rate_limit_exceeded``; fails if none comes in ``most + 1``."""
    for answered in range(most + 1):
        response = chat(gateway, key)
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
            assert int(response.headers["retry-after"]) > 0
            return answered
        assert response.status_code == 200, response.text
    pytest.fail(f"no rate limit after {most + 1} requests: the request counters did not come back")


def freeze(redis: RedisServer) -> None:
    assert redis.process is not None
    redis.process.send_signal(signal.SIGSTOP)  # connections stay open, nothing answers


def thaw(redis: RedisServer) -> None:
    assert redis.process is not None
    redis.process.send_signal(signal.SIGCONT)


def test_redis_outage_fails_closed_quickly_and_limits_hold_after_restart(
    start_gateway: Any, fake_env: dict[str, str], throwaway_redis: RedisServer
) -> None:
    """Protections: admission bounded by LIMITS_REDIS_TIMEOUT_SECONDS and refused with 503 when Redis is
    stalled or down (``RedisLimits._unavailable``, fail-closed: no request goes unmetered); after a
    restart the budget counters are rebuilt from the ledger (``BUDGET_MISSING`` -> ``_rebuild``: without
    it the budget would start again from zero) and the scripts reloaded, so the rate limit applies again."""
    gateway = start_gateway({**fake_env, "REDIS_URL": throwaway_redis.url})
    rpm = 6
    key = create_key(gateway.base_url, "carol", rate_limit_per_minute=rpm, monthly_token_budget=10_000)
    charged: list[int] = []
    first = chat(gateway, key, charged=charged)
    assert first.status_code == 200, first.text
    second = chat(gateway, key, charged=charged)
    assert remaining_tokens(second) == remaining_tokens(first) - USAGE_PER_REQUEST

    freeze(throwaway_redis)
    try:
        assert_refused_503(chat(gateway, key))
        assert_refused_503(chat(gateway, key, stream=True))
    finally:
        thaw(throwaway_redis)
    throwaway_redis.stop()
    for _ in range(3):
        assert_refused_503(chat(gateway, key))
    assert_refused_503(chat(gateway, key, stream=True))
    assert httpx.get(f"{gateway.base_url}/health", timeout=5).status_code == 200

    throwaway_redis.start()  # same port, empty: every counter is gone
    after = first_success_after_restart(gateway, key)
    # What was charged before the outage is charged again (rebuilt from the ledger), not forgotten.
    assert remaining_tokens(after) == remaining_tokens(first) - len(charged) * USAGE_PER_REQUEST
    # The request window restarted empty with Redis; the limit applies again from there.
    assert 1 <= 1 + successes_until_rate_limited(gateway, key, rpm) <= rpm


def test_redis_outage_fails_open_when_configured_and_is_counted_once_back(
    start_gateway: Any, fake_env: dict[str, str], throwaway_redis: RedisServer, fakes: dict[str, FakeProvider]
) -> None:
    """Protections: with LIMITS_ON_REDIS_ERROR=open admission degrades to unmetered instead of refusing,
    and the Redis cache misses (bounded by CACHE_REDIS_TIMEOUT_SECONDS and its breaker) rather than failing
    or hanging; the usage served meanwhile is in the ledger, so the rebuilt budget includes it."""
    gateway = start_gateway({**fake_env, "REDIS_URL": throwaway_redis.url, "LIMITS_ON_REDIS_ERROR": "open"})
    rpm = 12
    key = create_key(gateway.base_url, "dave", rate_limit_per_minute=rpm, monthly_token_budget=10_000)
    charged: list[int] = []
    first = chat(gateway, key, charged=charged)
    assert first.status_code == 200 and first.headers["x-gateway-cache"] == "miss"
    deadline = time.monotonic() + RECOVERY_SECONDS  # the answer is stored in the background
    while chat(gateway, key, charged=charged).headers["x-gateway-cache"] != "hit":  # a hit costs nothing
        assert time.monotonic() < deadline, "the Redis cache never answered"
    upstream_calls = fakes["openai"].count

    served = 0
    freeze(throwaway_redis)
    try:
        for _ in range(2):
            response = chat(gateway, key, charged=charged)
            assert response.status_code == 200 and response.headers["x-gateway-cache"] == "miss", response.text
            served += 1
    finally:
        thaw(throwaway_redis)
    throwaway_redis.stop()
    for _ in range(3):
        response = chat(gateway, key, charged=charged)
        assert response.status_code == 200 and response.headers["x-gateway-cache"] == "miss", response.text
        served += 1
    streamed = chat(gateway, key, stream=True, charged=charged)
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
    served += 1
    assert fakes["openai"].count == upstream_calls + served  # every one answered upstream: no cache, no refusal

    throwaway_redis.start()
    after = first_success_after_restart(gateway, key)
    # Rebuilt from the ledger: what was charged before and every request served unmetered during the outage.
    assert remaining_tokens(after) == remaining_tokens(first) - len(charged) * USAGE_PER_REQUEST
    assert 1 <= 1 + successes_until_rate_limited(gateway, key, rpm) <= rpm

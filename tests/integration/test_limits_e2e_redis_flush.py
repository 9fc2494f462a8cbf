"""Redis loses the month's counters (FLUSHALL) mid-month: the gateway rebuilds them from the usage ledger.

A restart must never hand anyone a fresh budget: after the flush ``/v1/usage`` still shows the month,
the counters in Redis hold the ledger's figure again, and a request that would exceed the budget is
refused while one that fits is served.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis

from llm_gateway import tokens
from tests.conftest import StartGateway
from tests.fakes import FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import MODEL, chat_body, ledger_rows, set_user, sqlite_path, wait_for
from tests.services import RedisServer

pytestmark = pytest.mark.integration

BUDGET = 1000
PREFIX = "flush:"
SERVED = 3
CHARGE = 11 + 7  # what the fake reports for each request


@pytest.fixture
def redis_client(throwaway_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(throwaway_redis.url)
    yield client
    client.close()


@pytest.fixture
def flushed_gateway(
    start_gateway: StartGateway, fake_env: dict[str, str], throwaway_redis: RedisServer
) -> GatewayServer:
    return start_gateway({**fake_env, "REDIS_URL": throwaway_redis.url, "REDIS_PREFIX": PREFIX})


def chat(gateway: GatewayServer, key: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"x-api-key": key}, json=body, timeout=20)


def month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def spend_and_flush(
    gateway: GatewayServer, key: str, fake_env: dict[str, str], redis_client: redis.Redis, user: str
) -> None:
    for i in range(SERVED):
        assert chat(gateway, key, chat_body(f"spend {i}")).status_code == 200
    # The rows are in the database (not only queued in the gateway) before Redis forgets everything.
    database = sqlite_path(fake_env["DATABASE_URL"])
    wait_for(lambda: len(ledger_rows(database, user_id=user)) == SERVED, what="ledger rows written")
    assert redis_client.hget(f"{PREFIX}budget:{user}:{month()}", "used") == str(SERVED * CHARGE).encode()
    redis_client.flushall()
    assert redis_client.dbsize() == 0


def test_budget_counters_are_rebuilt_from_the_ledger_after_flushall(
    flushed_gateway: GatewayServer,
    fake_env: dict[str, str],
    fakes: dict[str, FakeProvider],
    redis_client: redis.Redis,
) -> None:
    gateway = flushed_gateway
    set_user(gateway.base_url, "ursula", monthly_token_budget=BUDGET)
    key = create_key(gateway.base_url, "ursula")
    spend_and_flush(gateway, key, fake_env, redis_client, "ursula")
    used = SERVED * CHARGE
    left = BUDGET - used

    usage = httpx.get(f"{gateway.base_url}/v1/usage", headers={"x-api-key": key}).json()
    assert (usage["used_tokens"], usage["reserved_tokens"], usage["remaining_tokens"]) == (used, 0, left)
    assert usage["requests"] == SERVED

    estimate = tokens.estimate_prompt_tokens(chat_body("too much"), MODEL)
    too_much = chat(gateway, key, chat_body("too much", max_tokens=left - estimate + 1))
    assert too_much.status_code == 429, too_much.text  # a fresh budget would have admitted it
    assert too_much.json()["error"]["code"] == "insufficient_quota"
    assert f"{used} used" in too_much.json()["error"]["message"]
    assert too_much.headers["x-ratelimit-remaining-tokens"] == str(left)
    assert redis_client.hget(f"{PREFIX}budget:ursula:{month()}", "used") == str(used).encode()

    fakes["openai"].push(Reply(prompt_tokens=estimate, completion_tokens=left - estimate))
    exactly = chat(gateway, key, chat_body("too much", max_tokens=left - estimate))
    assert exactly.status_code == 200, exactly.text
    assert exactly.headers["x-ratelimit-remaining-tokens"] == "0"
    final = httpx.get(f"{gateway.base_url}/v1/usage", headers={"x-api-key": key}).json()
    assert (final["used_tokens"], final["reserved_tokens"], final["remaining_tokens"]) == (BUDGET, 0, 0)


def test_a_keys_own_budget_is_rebuilt_from_the_ledger_too(
    flushed_gateway: GatewayServer,
    fake_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    gateway = flushed_gateway
    key_budget = 100
    key = create_key(gateway.base_url, "victor", monthly_token_budget=key_budget)
    spend_and_flush(gateway, key, fake_env, redis_client, "victor")
    left = key_budget - SERVED * CHARGE

    estimate = tokens.estimate_prompt_tokens(chat_body("more"), MODEL)
    refused = chat(gateway, key, chat_body("more", max_tokens=left - estimate + 1))
    assert refused.status_code == 429, refused.text
    assert refused.headers["x-ratelimit-limit-tokens"] == str(key_budget)  # the key's cap binds
    assert refused.headers["x-ratelimit-remaining-tokens"] == str(left)
    assert chat(gateway, key, chat_body("more", max_tokens=left - estimate)).status_code == 200

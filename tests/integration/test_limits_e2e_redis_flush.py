"""Redis loses the month's counters (FLUSHALL) mid-month: the gateway rebuilds them from the usage ledger.

A restart must never hand anyone a fresh budget: after the flush ``/v1/usage`` still shows the month,
the counters in Redis hold the ledger's figure again, and a request that would exceed the budget is
refused while one that fits is served.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from llm_gateway import tokens
from tests.conftest import StartGateway
from tests.fakes import FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import ADMIN_HEADERS, create_key
from tests.limits_support import MODEL, chat_body, ledger_rows, set_user, sqlite_path, wait_for
from tests.messages_support import write_groups
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


def test_a_teams_dollar_spend_is_rebuilt_from_the_ledger_after_flushall(
    start_gateway: StartGateway,
    fake_env: dict[str, str],
    fakes: dict[str, FakeProvider],
    throwaway_redis: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    # $1 / $4 per million tokens: each answer (11 in, 7 out) costs $0.000039; the budget, $0.0002, holds five.
    price = {"input_per_mtok": "1", "output_per_mtok": "4"}
    config = write_groups(tmp_path, fakes, {"priced": [{"provider": "openai", "model": MODEL, "price": price}]})
    gateway = start_gateway(
        {**fake_env, "REDIS_URL": throwaway_redis.url, "REDIS_PREFIX": PREFIX, "GATEWAY_CONFIG": config}
    )
    admin = f"{gateway.base_url}/admin"
    assert httpx.put(f"{admin}/teams/ops", headers=ADMIN_HEADERS, json={"monthly_budget_usd": "0.0002"}).is_success
    assert httpx.put(f"{admin}/users/wanda", headers=ADMIN_HEADERS, json={"team_id": "ops"}).is_success
    key = create_key(gateway.base_url, "wanda")
    for i in range(SERVED):
        assert chat(gateway, key, chat_body(f"spend {i}", model="priced")).status_code == 200
    database = sqlite_path(fake_env["DATABASE_URL"])
    wait_for(lambda: len(ledger_rows(database, team_id="ops")) == SERVED, what="ledger rows written")
    spent_nano = SERVED * 39_000
    assert redis_client.hget(f"{PREFIX}teambudget:ops:{month()}", "used_nano") == str(spent_nano).encode()
    redis_client.flushall()

    left_nano = 200_000 - spent_nano  # 83,000
    estimate = tokens.estimate_prompt_tokens(chat_body("more", model="priced"), MODEL)
    needs = estimate * 1_000 + 20 * 4_000  # ~ 89,000: a fresh budget would admit it
    assert left_nano < needs < 200_000
    refused = chat(gateway, key, chat_body("more", model="priced", max_tokens=20))
    assert refused.status_code == 429, refused.text
    assert "US-dollar budget of team 'ops'" in refused.json()["error"]["message"]
    assert redis_client.hget(f"{PREFIX}teambudget:ops:{month()}", "used_nano") == str(spent_nano).encode()
    assert chat(gateway, key, chat_body("more", model="priced", max_tokens=15)).status_code == 200  # ~69,000 fits

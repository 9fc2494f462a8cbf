"""Cooldowns shared through Redis (DESIGN.md, Fallback): failures split across gateway processes cool the deployment
for all of them, which the in-process rule alone would not (each process saw fewer than ``COOLDOWN_FAILURES``).

First two real ``llm-gateway serve`` processes sharing one Redis, as replicas do; then ``SharedCooldowns`` itself,
two instances with their own clients, for what a success and a late start do to the fleet's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from llm_gateway.providers.shared_cooldowns import SharedCooldowns
from llm_gateway.store.redis import PrefixedRedis, connect
from tests.fakes import Fail, FakeProvider
from tests.serve_support import start_serve, user_env, wait_for
from tests.services import free_port, terminate

pytestmark = pytest.mark.integration

START_TIMEOUT_SECONDS = 60.0
PROPAGATION_TIMEOUT_SECONDS = 5.0
DEPLOYMENT = "openai/gpt-4o-mini"  # the first of the built-in group gpt-4o-mini; anthropic's follows


@pytest.fixture
def prefix() -> str:
    return f"t-cool-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def replicas(
    tmp_path: Path, redis_url: str, prefix: str, openai_fake: FakeProvider, anthropic_fake: FakeProvider
) -> Iterator[list[str]]:
    """Two gateways sharing Redis (each its own SQLite: the cooldowns need only Redis)."""
    env = user_env(openai_fake.env, anthropic_fake.env, {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    env |= {"COOLDOWN_FAILURES": "3", "COOLDOWN_SECONDS": "60", "CACHE_ENABLED": "false", "LOG_LEVEL": "WARNING"}
    env |= {"ANON_RATE_LIMIT_PER_MINUTE": "1000", "ANON_MONTHLY_TOKEN_BUDGET": "100000000", "HOST": "127.0.0.1"}
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    for name in ("a", "b"):
        port, log = free_port(), tmp_path / f"{name}.log"
        settings = {"PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path}/{name}.db"}
        started.append((f"http://127.0.0.1:{port}", start_serve({**env, **settings}, tmp_path, log), log))
    try:
        for url, process, log in started:
            wait_for(f"{url}/ready", process, log, START_TIMEOUT_SECONDS)
        yield [url for url, _, _ in started]
    finally:
        for _, process, _ in started:
            terminate(process, grace=15)


def chat(url: str, text: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response


async def _cooling_in_redis(redis_url: str, prefix: str) -> bool:
    client = Redis.from_url(redis_url)
    try:
        return bool(await client.hexists(f"{prefix}cooldown:until", DEPLOYMENT))
    finally:
        await client.aclose()


def test_failures_split_across_two_gateways_cool_the_deployment_for_both(
    replicas: list[str], redis_url: str, prefix: str, openai_fake: FakeProvider
) -> None:
    a, b = replicas
    openai_fake.set_default(Fail(500))
    for url in (a, b, a):  # 2 failures on a, 1 on b: below COOLDOWN_FAILURES on each, 3 in a row in the fleet
        assert chat(url, "openai fails, anthropic answers").headers["x-gateway-attempts"] == "2"
    assert openai_fake.count == 3

    deadline = time.monotonic() + PROPAGATION_TIMEOUT_SECONDS
    while not asyncio.run(_cooling_in_redis(redis_url, prefix)):
        assert time.monotonic() < deadline, "the third failure in a row did not start a fleet cooldown"
        time.sleep(0.05)
    time.sleep(0.3)  # the cooldown's publish reaching both (milliseconds, on loopback)

    for url in (b, a):
        response = chat(url, "cooled: anthropic first")
        assert (response.headers["x-gateway-provider"], response.headers["x-gateway-attempts"]) == ("anthropic", "1")
    assert openai_fake.count == 3  # skipped by both


# -- SharedCooldowns on its own --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def shared(redis_url: str, prefix: str, *, failures: int = 3) -> AsyncIterator[SharedCooldowns]:
    redis: PrefixedRedis = connect(redis_url, prefix)
    cooldowns = SharedCooldowns(failures, 60, redis)
    cooldowns.start()
    try:
        await _until(lambda: cooldowns.subscribed)
        yield cooldowns
    finally:
        await cooldowns.aclose()
        await redis.client.aclose()


async def _until(condition: Callable[[], bool], timeout: float = PROPAGATION_TIMEOUT_SECONDS) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_success_anywhere_ends_the_fleets_streak(redis_url: str, prefix: str) -> None:
    async with shared(redis_url, prefix) as one, shared(redis_url, prefix) as two:
        one.failed(DEPLOYMENT)
        two.failed(DEPLOYMENT)
        await _until(lambda: one._fleet_streak.get(DEPLOYMENT) == 2)
        one.succeeded(DEPLOYMENT)  # streak known here: the success is sent
        await _until(lambda: DEPLOYMENT not in two._fleet_streak)
        two.failed(DEPLOYMENT)
        one.failed(DEPLOYMENT)  # 2 in a row since the success: not cooling
        await _until(lambda: two._fleet_streak.get(DEPLOYMENT) == 2)
        assert not one.cooling(DEPLOYMENT) and not two.cooling(DEPLOYMENT)


async def test_a_gateway_started_during_a_cooldown_skips_the_deployment_at_once(redis_url: str, prefix: str) -> None:
    async with shared(redis_url, prefix, failures=1) as early:
        early.failed(DEPLOYMENT)
        await _until(lambda: DEPLOYMENT in early._fleet_until)
        async with shared(redis_url, prefix, failures=1) as late:  # loads the fleet's state as it subscribes
            assert late.cooling(DEPLOYMENT)
            assert not late.cooling("anthropic/claude-3-5-haiku-latest")

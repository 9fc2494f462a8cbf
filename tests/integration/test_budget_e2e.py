"""Monthly token budgets and request rates under concurrency, proven through the gateway over HTTP.

100 concurrent chat requests against a user budget that fits 20: embedded, with Redis, and with two
``llm-gateway serve`` processes sharing Redis and the database. The fake upstream reports a few more
prompt tokens than the gateway estimates, so the bound on the overshoot is not trivially zero; the
controls run the same scenario with admission that checks but does not reserve, and show it fails.
The same two processes then count one key's requests per minute together.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from llm_gateway import tokens
from llm_gateway.limits import memory as memory_limits
from llm_gateway.limits import redis as redis_limits
from llm_gateway.limits.budget import Counts
from llm_gateway.limits.rule import Outcome, Plan, RateCounts
from tests.conftest import StartGateway
from tests.fakes import Delay, FakeProvider, Reply
from tests.identity_support import create_key
from tests.limits_support import (
    MODEL,
    ServedGateway,
    admin_usage,
    assert_ratelimit_headers,
    chat_body,
    drop_prefix,
    set_user,
    sharing_redis,
    unique_prefix,
    wait_for,
)

pytestmark = pytest.mark.integration

CONCURRENT = 100
FITS = 20
MAX_TOKENS = 7
PROMPT_ERROR = 3  # the fake reports this many prompt tokens more than the gateway's estimate
UPSTREAM_SECONDS = 1.0  # every admitted request is in flight at once: none settles before all are admitted
# The test's 100 clients share the CPU (and, in-thread, the GIL) with the gateway: on a loaded machine its
# event loop lags past the 0.5 s default, which is an outage detector and not what is measured here.
SLOW_BOX = {"LIMITS_REDIS_TIMEOUT_SECONDS": "5"}


@dataclass(frozen=True)
class Scenario:
    """The numbers of the test, all derived from the gateway's own prompt estimate."""

    estimate: int  # the gateway's prompt estimate for chat_body() (checked against its 429 message)
    reported_prompt: int  # what the fake says the prompt cost
    completion: int  # what the fake says the completion cost (== max_tokens: reservations are exact)

    @property
    def reservation(self) -> int:
        return self.estimate + MAX_TOKENS

    @property
    def budget(self) -> int:
        return FITS * self.reservation

    @property
    def charged(self) -> int:
        return self.reported_prompt + self.completion

    def bound(self, served: int) -> int:
        """What the estimation error of ``served`` requests in flight can add over the budget."""
        return served * max(0, self.reported_prompt - self.estimate)


def scenario(prompt_error: int = PROMPT_ERROR) -> Scenario:
    estimate = tokens.estimate_prompt_tokens(chat_body(max_tokens=MAX_TOKENS), MODEL)
    return Scenario(estimate=estimate, reported_prompt=estimate + prompt_error, completion=MAX_TOKENS)


@dataclass
class Shape:
    base_urls: list[str]
    fake: FakeProvider


@dataclass
class Outcome100:
    served: list[httpx.Response]
    refused: list[httpx.Response]
    elapsed: float

    @property
    def served_tokens(self) -> int:
        return sum(int(r.json()["usage"]["total_tokens"]) for r in self.served)


async def fire(base_urls: list[str], key: str, count: int) -> Outcome100:
    """``count`` chat requests at once, alternating between the gateways."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{base_urls[i % len(base_urls)]}/v1/chat/completions",
                    headers={"x-api-key": key},
                    json=chat_body(max_tokens=MAX_TOKENS),
                )
                for i in range(count)
            )
        )
    elapsed = time.monotonic() - started
    return Outcome100(
        served=[r for r in responses if r.status_code == 200],
        refused=[r for r in responses if r.status_code != 200],
        elapsed=elapsed,
    )


async def run_scenario(shape: Shape, user: str, prompt_error: int = PROMPT_ERROR) -> tuple[Scenario, Outcome100, str]:
    numbers = scenario(prompt_error)
    shape.fake.reset()
    shape.fake.set_default(
        Delay(UPSTREAM_SECONDS, Reply(prompt_tokens=numbers.reported_prompt, completion_tokens=numbers.completion))
    )
    admin_url = shape.base_urls[0]
    set_user(admin_url, user, monthly_token_budget=numbers.budget, rate_limit_per_minute=10_000)
    key = create_key(admin_url, user)
    outcome = await fire(shape.base_urls, key, CONCURRENT)
    return numbers, outcome, key


def check_refusal(response: httpx.Response, numbers: Scenario) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    # The gateway's own estimate is the one the bound is computed from.
    assert f"prompt ~{numbers.estimate} + max_tokens {MAX_TOKENS}" in error["message"], error["message"]
    assert int(response.headers["retry-after"]) >= 1
    headers = assert_ratelimit_headers(response.headers)
    assert int(headers["x-ratelimit-limit-tokens"]) == numbers.budget
    assert int(headers["x-ratelimit-remaining-tokens"]) < numbers.reservation


def check_served(response: httpx.Response, numbers: Scenario) -> None:
    body = response.json()
    assert body["usage"]["prompt_tokens"] == numbers.reported_prompt
    assert body["usage"]["completion_tokens"] == numbers.completion
    headers = assert_ratelimit_headers(response.headers)
    assert int(headers["x-ratelimit-limit-tokens"]) == numbers.budget


def overshoot_within_bound(shape: Shape, user: str, numbers: Scenario, outcome: Outcome100) -> int:
    """Assert the budget held; return the measured overshoot in tokens."""
    for response in outcome.refused:
        check_refusal(response, numbers)
    for response in outcome.served:
        check_served(response, numbers)
    served = len(outcome.served)
    overshoot = outcome.served_tokens - numbers.budget
    assert outcome.served_tokens <= numbers.budget + numbers.bound(served), (
        f"{served} served, {outcome.served_tokens} tokens > budget {numbers.budget} + bound {numbers.bound(served)}"
    )
    # Exactly as many as the budget fits: no fewer (the reservation is exact) and no more.
    assert served == FITS
    assert shape.fake.count == served  # a refused request never reaches the upstream
    # The admitted requests really were in flight together (one after another would take 20 s).
    assert outcome.elapsed < served * UPSTREAM_SECONDS / 2, outcome.elapsed

    report = wait_for(
        lambda: (r := admin_usage(shape.base_urls[0], user))["requests"] == served and r,
        what="every served request in the ledger",
    )
    assert report["used_tokens"] == outcome.served_tokens
    assert report["reserved_tokens"] == 0
    assert report["remaining_tokens"] == max(0, numbers.budget - outcome.served_tokens)
    print(f"\nbudget {numbers.budget}: {served} served, {outcome.served_tokens} tokens, overshoot {overshoot}")
    return overshoot


# -- the three shapes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider("openai") as fake:
        yield fake


@pytest.fixture(scope="module")
def two_processes(
    upstream: FakeProvider, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServedGateway]]:
    """Two ``llm-gateway serve`` processes sharing one Redis (a prefix of their own) and one SQLite file."""
    workdir = tmp_path_factory.mktemp("two-processes")
    env = {"GATEWAY_CONFIG": "", **SLOW_BOX, **upstream.env}
    with sharing_redis(workdir, redis_url, "budget-e2e", env) as (gateways, _):
        yield gateways


@pytest.fixture
def redis_env(fake_env: dict[str, str], redis_url: str) -> Iterator[dict[str, str]]:
    prefix = unique_prefix("budget-e2e")
    yield {**fake_env, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, **SLOW_BOX}
    drop_prefix(redis_url, prefix)


@pytest.mark.parametrize("prompt_error", [0, PROMPT_ERROR])
async def test_embedded_budget_holds_under_100_concurrent_requests(
    start_gateway: StartGateway, fake_env: dict[str, str], openai_fake: FakeProvider, prompt_error: int
) -> None:
    shape = Shape([start_gateway(fake_env).base_url], openai_fake)
    numbers, outcome, _ = await run_scenario(shape, "budget-embedded", prompt_error)
    # An exact estimate spends the budget to the token; an estimate short by N overshoots by N per request.
    assert overshoot_within_bound(shape, "budget-embedded", numbers, outcome) == FITS * prompt_error


async def test_redis_budget_holds_under_100_concurrent_requests(
    start_gateway: StartGateway, redis_env: dict[str, str], openai_fake: FakeProvider
) -> None:
    shape = Shape([start_gateway(redis_env).base_url], openai_fake)
    numbers, outcome, _ = await run_scenario(shape, "budget-redis")
    assert overshoot_within_bound(shape, "budget-redis", numbers, outcome) == FITS * PROMPT_ERROR


async def test_two_processes_sharing_redis_hold_one_budget(
    two_processes: list[ServedGateway], upstream: FakeProvider
) -> None:
    shape = Shape([gateway.base_url for gateway in two_processes], upstream)
    numbers, outcome, _ = await run_scenario(shape, "budget-two-processes")
    # Each process answered 50 requests; alone, each would have admitted FITS of them (2 x FITS in all):
    # exactly FITS served means both drew on one budget.
    by_process = {url: 0 for url in shape.base_urls}
    for response in outcome.served + outcome.refused:
        by_process[f"{response.request.url.scheme}://{response.request.url.netloc.decode()}"] += 1
    assert list(by_process.values()) == [CONCURRENT // 2] * 2, by_process
    assert overshoot_within_bound(shape, "budget-two-processes", numbers, outcome) == FITS * PROMPT_ERROR


# -- the controls: admission that checks without reserving lets the budget be overrun ------------


def _check_only_decide(original: Callable[..., Outcome]) -> Callable[..., Outcome]:
    def decide(plan: Plan, rates: Sequence[RateCounts], counts: Sequence[Counts], allowance: Any) -> Outcome:
        unreserved = tuple(replace(c, reserved=0, reserved_nano=0) for c in counts)
        return original(plan, rates, unreserved, allowance)

    return decide


def _check_only_lua(original: Callable[[str], str]) -> Callable[[str], str]:
    def lua_source(name: str) -> str:
        source = original(name)
        if name != "admit.lua":
            return source
        patched = source.replace("token_limit - used[i] - reserved[i]", "token_limit - used[i]")
        assert patched != source
        return patched

    return lua_source


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_control_without_reservation_the_budget_is_overrun(
    backend: str,
    start_gateway: StartGateway,
    fake_env: dict[str, str],
    openai_fake: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "embedded":
        monkeypatch.setattr(memory_limits, "decide", _check_only_decide(memory_limits.decide))
        env = fake_env
    else:
        monkeypatch.setattr(redis_limits, "lua_source", _check_only_lua(redis_limits.lua_source))
        env = request.getfixturevalue("redis_env")
    shape = Shape([start_gateway(env).base_url], openai_fake)
    numbers, outcome, _ = await run_scenario(shape, f"control-{backend}")
    served = len(outcome.served)
    assert served > FITS
    assert outcome.served_tokens > numbers.budget + numbers.bound(served)
    with pytest.raises(AssertionError):
        overshoot_within_bound(shape, f"control-{backend}", numbers, outcome)


# -- requests per minute, counted by two processes together ---------------------------------------


def test_two_processes_count_one_keys_requests_per_minute_together(
    two_processes: list[ServedGateway], upstream: FakeProvider
) -> None:
    upstream.reset()
    first, second = two_processes
    key = create_key(first.base_url, "rpm-two-processes", rate_limit_per_minute=5)
    answers = [
        httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"x-api-key": key}, json=chat_body(f"ping {i}"))
        for i, gateway in zip(range(10), [first, second] * 5, strict=True)
    ]
    assert [r.status_code for r in answers] == [200] * 5 + [429] * 5
    assert upstream.count == 5
    # One count across both processes: what is left goes down whichever process answers.
    assert [int(r.headers["x-ratelimit-remaining-requests"]) for r in answers[:5]] == [4, 3, 2, 1, 0]
    for response in answers[5:]:
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert re.fullmatch(r"Rate limit reached for requests per minute: limit 5\. .*", error["message"])
        assert 1 <= int(response.headers["retry-after"]) <= 120
        headers = assert_ratelimit_headers(response.headers)
        assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("5", "0")

"""What admission adds to a request: admit + settle latency, in process and against Redis (one round trip each).

    python bench/admission.py [--requests 5000] [--redis-url redis://127.0.0.1:6379/0] [--callers user key]

Sequential calls on one event loop (uvloop, as the gateway serves), so the numbers are the
latency one request pays, not throughput. Callers: ``user`` (a user's token budget), ``key`` (and
its key's), ``team`` (every limit there is: user, key and team budgets in tokens and US dollars, the
team's rate, a priced request settled at its cost). Also times the prompt estimate of a ~500-token chat.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import uvloop
from redis.asyncio import Redis

from llm_gateway import tokens
from llm_gateway.auth.identity import Identity
from llm_gateway.limits import Admission, MemoryLimits, RedisLimits
from llm_gateway.schemas.core import Usage

CALLERS = {
    "user": Identity("bench-user", "api_key", 10**9, 10**15, key_id="bench-key"),
    "key": Identity("bench-user", "api_key", 10**9, 10**15, key_id="bench-key", key_token_budget=10**15),
    "team": Identity(
        "bench-user",
        "api_key",
        10**9,
        10**15,
        key_id="bench-key",
        key_token_budget=10**15,
        monthly_budget_usd=Decimal(10**6),
        key_budget_usd=Decimal(10**6),
        team_id="bench-team",
        team_token_budget=10**15,
        team_budget_usd=Decimal(10**6),
        team_rate_limit_per_minute=10**9,
    ),
}
PROMPT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a careful assistant. Answer briefly and cite sources. " * 8},
        {"role": "user", "content": "Summarise the trade-offs of sliding window rate limiting in Redis. " * 20},
    ],
}


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50:8.1f} us   p99 {p99:8.1f} us"


async def run(limits: Admission, requests: int, caller: str) -> dict[str, list[float]]:
    who = CALLERS[caller]
    priced: dict[str, Any] = {}
    if caller == "team":  # the price and cost arguments exist only since US-dollar budgets
        from llm_gateway.pricing import ReservePrice

        priced = {"price": ReservePrice(150, 600)}
    samples: dict[str, list[float]] = {"admit": [], "settle": [], "admit+settle": []}
    for index in range(requests + 200):  # the first 200 warm the pool and the script cache
        started = time.perf_counter()
        ticket = await limits.admit(who, prompt_tokens=500, max_completion_tokens=200, **priced)
        admitted = time.perf_counter()
        if priced:
            await limits.settle(ticket, Usage(500, 150), cost_nano=165_000)
        else:
            await limits.settle(ticket, Usage(500, 150))
        settled = time.perf_counter()
        if index >= 200:
            samples["admit"].append((admitted - started) * 1e6)
            samples["settle"].append((settled - admitted) * 1e6)
            samples["admit+settle"].append((settled - started) * 1e6)
    return samples


def report(name: str, samples: dict[str, list[float]]) -> None:
    for what, values in samples.items():
        print(f"{name:12} {what:13} {percentiles(values)}")


def time_it(function: Callable[[], object], rounds: int = 2000) -> list[float]:
    values = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        values.append((time.perf_counter() - started) * 1e6)
    return values


async def main(requests: int, redis_url: str, callers: list[str]) -> None:
    for caller in callers:
        report(f"memory/{caller}", await run(MemoryLimits(), requests, caller))
    client = Redis.from_url(redis_url)
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    try:
        for caller in callers:
            report(f"redis/{caller}", await run(RedisLimits(client, prefix), requests, caller))
        started = time.perf_counter()
        for _ in range(1000):
            await client.ping()
        print(f"redis   PING (reference)  mean {(time.perf_counter() - started) * 1e3:8.1f} us")
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()
    tokens.preload()
    estimate = tokens.estimate_prompt_tokens(PROMPT)
    print(f"tokens  estimate ({estimate} tokens) {percentiles(time_it(lambda: tokens.estimate_prompt_tokens(PROMPT)))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--callers", nargs="+", choices=sorted(CALLERS), default=["user", "key", "team"])
    arguments = parser.parse_args()
    uvloop.run(main(arguments.requests, arguments.redis_url, arguments.callers))

"""The Redis path of one full-pipeline request, alone: the gateway's CPU per request for its Redis round trips.

Why: in the shared shape (bench/full_pipeline.py) the Redis commands are ~250 us of the ~400 us a request
pays over the bare proxy, but a wrk row mixes them with uvicorn, the upstream hop and the kernel. This runs
just what the pipeline asks of Redis for one request, with the gateway's own clients (``store.redis.connect``,
one for the limits and one for the cache, as ``app.py`` makes them) against a throw-away ``redis-server``
(or ``REDIS_URL``, loopback): admission (a rate limit, the user's and the key's token and US-dollar budgets),
the cache lookup, settlement, the cache store (``--hit``: one body, so the lookup hits and there is no store).
``--concurrency`` requests run at once, as at 64 connections. Reports the process's CPU per request.

    python bench/redis_path.py [--requests 20000] [--concurrency 64] [--hit] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

import uvloop

from llm_gateway.auth.identity import Identity
from llm_gateway.cache import RedisCache
from llm_gateway.limits import RedisLimits
from llm_gateway.pricing import ReservePrice
from llm_gateway.schemas.core import Usage
from llm_gateway.store.redis import connect
from llm_gateway.store.resp import connect_pipelined

IDENTITY = Identity(
    user_id="bench",
    kind="key",
    rate_limit_per_minute=1_000_000_000,
    monthly_token_budget=10**15,
    key_id="key-bench",
    key_token_budget=10**15,
    monthly_budget_usd=Decimal(4_000_000),
    key_budget_usd=Decimal(4_000_000),
)
PRICE = ReservePrice(input_nano=150, output_nano=600)
ANSWER: dict[str, Any] = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 24, "completion_tokens": 4, "total_tokens": 28},
}


async def one_request(limits: RedisLimits, cache: RedisCache, key: str) -> bool:
    ticket = await limits.admit(IDENTITY, prompt_tokens=24, max_completion_tokens=64, price=PRICE)
    hit = await cache.get(key)
    if hit is not None:
        await limits.settle(ticket, None, cached=True)
        return True
    await limits.settle(ticket, Usage(24, 4), cost_nano=24 * 150 + 4 * 600)
    cache.set(key, ANSWER)
    return False


async def run(url: str, args: argparse.Namespace) -> None:
    prefix = f"bench-redis-path-{os.getpid()}:"
    if args.client == "pipelined":
        limits_client, cache_client = connect_pipelined(url), connect_pipelined(url)
    else:
        limits_client, cache_client = connect(url, prefix).client, connect(url, prefix).client
    limits = RedisLimits(limits_client, prefix)
    # A generous timeout: under a loaded machine the 50 ms default opens the circuit, and skipped commands
    # would make a run look cheaper than it is (the errors are printed anyway).
    cache = RedisCache(cache_client, prefix=f"{prefix}cache:", ttl_seconds=300, timeout_seconds=args.cache_timeout)
    counter = iter(range(10**9))

    async def worker(count: int) -> int:
        hits = 0
        for _ in range(count):
            key = "same" if args.hit else f"k{next(counter)}"
            hits += await one_request(limits, cache, key)
        return hits

    async def batch(requests: int) -> tuple[float, int]:
        per = requests // args.concurrency
        started = time.process_time()
        hits = sum(await asyncio.gather(*(worker(per) for _ in range(args.concurrency))))
        await cache.drain()
        return (time.process_time() - started) / (per * args.concurrency), hits

    try:
        await batch(2_000)  # warm: connections pooled, scripts loaded, budget hashes built
        for _ in range(args.repeat):
            cpu, hits = await batch(args.requests)
            print(
                f"{cpu * 1e6:.1f} us of CPU per request (hits {hits}, errors {cache.errors}, "
                f"dropped writes {cache.dropped_writes})",
                flush=True,
            )
    finally:
        await limits.aclose()
        await limits_client.aclose()
        await cache_client.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--hit", action="store_true", help="one body: every lookup hits, nothing is stored")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--client", choices=["pipelined", "redis-py"], default="pipelined")
    parser.add_argument("--cache-timeout", type=float, default=1.0, help="the cache's command timeout (s)")
    args = parser.parse_args(argv)
    url = os.environ.get("REDIS_URL")
    server = None
    if not url:
        binary = shutil.which("redis-server")
        if binary is None:
            print("no REDIS_URL and no redis-server on PATH", file=sys.stderr)
            return 2
        port = free_port()
        argv_server = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = subprocess.Popen(argv_server, stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.02)
    try:
        uvloop.run(run(url, args))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to first byte and total time of streamed chat completions, one request after another.

Why a probe of our own: wrk measures whole responses, not when the first SSE event arrives.
This sends N sequential ``"stream": true`` requests over one keep-alive aiohttp connection
(uvloop) and times, per request, the first body bytes (the first ``data:`` event) and the
end of the stream; it checks every stream carried the expected number of events. Run pinned
to the client core by ``bench/run.py``; the probe's own overhead is the same for the direct
and the gateway runs, so it cancels in their difference.

    python bench/stream_probe.py --url http://127.0.0.1:8001/v1/chat/completions --model bench \\
        --requests 200 [--warmup 10] [--events 22] [--auth KEY]

Prints one JSON line: {"requests", "errors", "ttfb_ms": {"p50", "p99", ...}, "total_ms": {...}}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import aiohttp
import orjson
import uvloop

REQUEST_TIMEOUT_S = 30.0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (what wrk reports too), of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 50), 3),
        "p90": round(percentile(values, 90), 3),
        "p99": round(percentile(values, 99), 3),
        "mean": round(statistics.fmean(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


async def one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[float, float, int]:
    """(ttfb ms, total ms, data events) of one streamed request; raises on a non-200 answer."""
    start = time.perf_counter()
    first = 0.0
    events = 0
    async with session.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"status {response.status}: {(await response.read())[:200]!r}")
        tail = b""
        while True:
            chunk = await response.content.readany()
            if not chunk:
                break
            if not first:
                first = time.perf_counter()
            # Count "data:" at line starts, across chunk boundaries.
            joined = tail + chunk
            events += joined.count(b"\ndata:") + (1 if not tail and joined.startswith(b"data:") else 0)
            tail = joined[-8:]
    end = time.perf_counter()
    return (first - start) * 1000, (end - start) * 1000, events


async def probe(args: argparse.Namespace) -> dict[str, Any]:
    body = orjson.dumps(
        {
            "model": args.model,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Say hello in one short sentence."},
            ],
            "max_tokens": 64,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    headers = {"content-type": "application/json"}
    if args.auth:
        headers["authorization"] = f"Bearer {args.auth}"
    ttfb: list[float] = []
    total: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for i in range(args.warmup + args.requests):
            try:
                first_ms, total_ms, events = await one(session, args.url, body, headers)
            except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if args.events and events != args.events:
                errors.append(f"expected {args.events} events, got {events}")
                continue
            if i >= args.warmup:
                ttfb.append(first_ms)
                total.append(total_ms)
    return {
        "requests": len(ttfb),
        "errors": len(errors),
        "first_errors": errors[:3],
        "ttfb_ms": summary(ttfb),
        "total_ms": summary(total),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", default="bench")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--events", type=int, default=0, help="expected data: events per stream (0 = no check)")
    parser.add_argument("--auth", default="")
    args = parser.parse_args(argv)
    result = uvloop.run(probe(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

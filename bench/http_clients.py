"""Choose the gateway's upstream HTTP client by measurement: httpx, aiohttp, and the gateway's own transport.

Why: every gateway request makes at least one upstream call, so the client's per-request
CPU cost and tail latency are paid on the hot path. Rather than pick by habit, this script
drives the same fake upstream (bench/upstream.py, pinned to core 1) with each client
(pinned to core 0, on uvloop, one long-lived pooled client, sized for 256 connections) doing
equivalent work: pre-serialised orjson body out, full body in, parsed with orjson; for
streams, every SSE line read and every event parsed. Each client runs in its own fresh
process so neither inherits the other's warm state.

Scenarios: non-streaming POSTs at concurrency C, streaming POSTs at concurrency C, and
sequential non-streaming POSTs at concurrency 1 (latency). Reported per client and scenario:
req/s, p50/p99 ms, client CPU seconds per 1,000 requests (time.process_time) and the
upstream's CPU use (from /proc) to show the upstream was not the bottleneck.

    .venv/bin/python bench/http_clients.py [--requests 20000] [--stream-requests 2000]
        [--sequential 2000] [--concurrency 64] [--clients httpx,aiohttp,transport]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import orjson
import uvloop

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream.py"
HOST = "127.0.0.1"
CLIENT_CORE = "0"
UPSTREAM_CORE = "1"
READY_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
SCENARIO_TIMEOUT_S = 600.0
WORKER_TIMEOUT_S = 1500.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Say hello in one short sentence."},
    ],
    "max_tokens": 64,
    "temperature": 0,
}
BODY = orjson.dumps(_REQUEST)
STREAM_BODY = orjson.dumps({**_REQUEST, "stream": True, "stream_options": {"include_usage": True}})
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}


class BenchClient(Protocol):
    async def complete(self) -> None: ...

    async def stream(self) -> None: ...

    async def aclose(self) -> None: ...


def _check_completion(data: Any) -> None:
    if not isinstance(data, dict) or "usage" not in data:
        raise RuntimeError(f"unexpected completion: {data!r:.200}")


def _check_stream(events: int, done: bool, expected: int) -> None:
    if not done or events != expected:
        raise RuntimeError(f"stream ended early: events={events} done={done} expected={expected}")


class HttpxClient:
    """httpx.AsyncClient, HTTP/1.1, one client for the whole run."""

    def __init__(self, url: str, stream_events: int) -> None:
        import httpx

        self.url = url
        self.expected = stream_events + 1  # content chunks + usage chunk
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=30.0)
        self.client = httpx.AsyncClient(
            limits=limits, timeout=httpx.Timeout(REQUEST_TIMEOUT_S), http1=True, http2=False
        )

    async def complete(self) -> None:
        response = await self.client.post(self.url, content=BODY, headers=HEADERS)
        if response.status_code != 200:
            raise RuntimeError(f"status {response.status_code}")
        _check_completion(orjson.loads(response.content))

    async def stream(self) -> None:
        events, done = 0, False
        async with self.client.stream("POST", self.url, content=STREAM_BODY, headers=HEADERS) as response:
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                if payload == "[DONE]":
                    done = True
                    break
                orjson.loads(payload)
                events += 1
        _check_stream(events, done, self.expected)

    async def aclose(self) -> None:
        await self.client.aclose()


class AiohttpClient:
    """aiohttp.ClientSession on a TCPConnector sized for 256 connections, one session for the whole run."""

    def __init__(self, url: str, stream_events: int) -> None:
        import aiohttp

        self.url = url
        self.expected = stream_events + 1
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30.0)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        )

    async def complete(self) -> None:
        async with self.session.post(self.url, data=BODY, headers=HEADERS) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
        _check_completion(orjson.loads(body))

    async def stream(self) -> None:
        events, done = 0, False
        async with self.session.post(self.url, data=STREAM_BODY, headers=HEADERS) as response:
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
            async for raw in response.content:  # one line at a time
                if not raw.startswith(b"data: "):
                    continue
                payload = raw[6:].rstrip(b"\r\n")
                if payload == b"[DONE]":
                    done = True
                    break
                orjson.loads(payload)
                events += 1
        _check_stream(events, done, self.expected)

    async def aclose(self) -> None:
        await self.session.close()


class TransportClient:
    """The gateway's own ``HttpTransport`` (asyncio.Protocol + httptools), used as the adapters use it."""

    def __init__(self, url: str, stream_events: int) -> None:
        from llm_gateway.http import HttpTransport, iter_sse

        self.iter_sse = iter_sse
        self.expected = stream_events + 1
        self.transport = HttpTransport(url.removesuffix("/chat/completions"))
        self.head = self.transport.request_head("/chat/completions", HEADERS)

    async def complete(self) -> None:
        async with self.transport.post(self.head, BODY, timeout=REQUEST_TIMEOUT_S) as response:
            body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        _check_completion(orjson.loads(body))

    async def stream(self) -> None:
        events, done = 0, False
        async with self.transport.post(self.head, STREAM_BODY, timeout=REQUEST_TIMEOUT_S) as response:
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
            async for event in self.iter_sse(response, max_line_bytes=1024 * 1024):
                if event.data == b"[DONE]":
                    done = True
                    break
                orjson.loads(event.data)
                events += 1
        _check_stream(events, done, self.expected)

    async def aclose(self) -> None:
        await self.transport.aclose()


CLIENTS: dict[str, Callable[[str, int], BenchClient]] = {
    "httpx": HttpxClient,
    "aiohttp": AiohttpClient,
    "transport": TransportClient,
}


@dataclass
class Result:
    client: str
    scenario: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_s_per_1k: float
    upstream_cpu_pct: float


def _upstream_cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc (0 when unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def _drive(call: Callable[[], Awaitable[None]], total: int, concurrency: int) -> list[float]:
    """Run `call` exactly `total` times over `concurrency` worker tasks; return latencies in seconds."""
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < total:
            next_index += 1
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), SCENARIO_TIMEOUT_S)
    return latencies


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


async def _measure(
    name: str, scenario: str, call: Callable[[], Awaitable[None]], total: int, concurrency: int, upstream_pid: int
) -> Result:
    up0, cpu0, wall0 = _upstream_cpu_s(upstream_pid), time.process_time(), time.perf_counter()
    latencies = await _drive(call, total, concurrency)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    upstream = _upstream_cpu_s(upstream_pid) - up0
    latencies.sort()
    return Result(
        client=name,
        scenario=scenario,
        requests=total,
        rps=total / wall,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        cpu_s_per_1k=cpu / total * 1000,
        upstream_cpu_pct=upstream / wall * 100,
    )


async def run_worker(args: argparse.Namespace) -> list[Result]:
    url = f"http://{HOST}:{args.port}/v1/chat/completions"
    client = CLIENTS[args.worker](url, args.stream_events)
    c = args.concurrency
    try:
        await _drive(client.complete, args.warmup, c)  # open the pool, warm caches
        await _drive(client.stream, max(1, args.warmup // 10), c)
        return [
            await _measure(args.worker, f"json c={c}", client.complete, args.requests, c, args.upstream_pid),
            await _measure(args.worker, f"stream c={c}", client.stream, args.stream_requests, c, args.upstream_pid),
            await _measure(args.worker, "json c=1", client.complete, args.sequential, 1, args.upstream_pid),
        ]
    finally:
        await client.aclose()


def _wait_ready(proc: subprocess.Popen[bytes]) -> int:
    """Read the upstream's `READY <port>` line, bounded by READY_TIMEOUT_S."""
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                break
            line = proc.stdout.readline().decode()
            if line.startswith("READY "):
                return int(line.split()[1])
            if not line:
                break
    raise RuntimeError("upstream did not print READY in time")


def _start_upstream(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = ["taskset", "-c", UPSTREAM_CORE, sys.executable, str(UPSTREAM), "--port", "0"]
    command += ["--stream-events", str(args.stream_events), "--delay-ms", str(args.delay_ms)]
    return subprocess.Popen(command, stdout=subprocess.PIPE)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _run_client(args: argparse.Namespace, name: str, port: int, upstream_pid: int) -> list[Result]:
    command = ["taskset", "-c", CLIENT_CORE, sys.executable, str(Path(__file__).resolve()), "--worker", name]
    command += ["--port", str(port), "--upstream-pid", str(upstream_pid)]
    for option in ("requests", "stream_requests", "sequential", "concurrency", "warmup", "stream_events"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    done = subprocess.run(command, capture_output=True, timeout=WORKER_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{name} worker failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    return [Result(**row) for row in json.loads(done.stdout)]


def _print_table(results: list[Result]) -> None:
    header = f"{'client':<9} {'scenario':<12} {'requests':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    header += f" {'CPU s/1k':>9} {'upstream CPU':>12}"
    print(header)
    print("-" * len(header))
    for r in sorted(results, key=lambda r: (r.scenario, r.client)):
        line = f"{r.client:<9} {r.scenario:<12} {r.requests:>8} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
        print(line + f" {r.cpu_s_per_1k:>9.3f} {r.upstream_cpu_pct:>11.0f}%")


def _versions() -> str:
    return f"python {sys.version.split()[0]}, " + ", ".join(f"{p} {version(p)}" for p in ("httpx", "aiohttp", "uvloop"))


def orchestrate(args: argparse.Namespace) -> None:
    upstream = _start_upstream(args)
    try:
        port = _wait_ready(upstream)
        results: list[Result] = []
        for name in args.clients.split(","):
            results += _run_client(args, name, port, upstream.pid)
    finally:
        _stop(upstream)
    print(f"# {_versions()}; client on core {CLIENT_CORE}, upstream on core {UPSTREAM_CORE}")
    print(f"# upstream: {args.stream_events} events per stream, delay {args.delay_ms} ms\n")
    _print_table(results)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="httpx vs aiohttp vs the gateway's transport against bench/upstream.py"
    )
    parser.add_argument("--requests", type=int, default=20_000, help="non-streaming requests at --concurrency")
    parser.add_argument("--stream-requests", type=int, default=2_000, help="streaming requests at --concurrency")
    parser.add_argument("--sequential", type=int, default=2_000, help="non-streaming requests at concurrency 1")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--stream-events", type=int, default=16, help="content chunks per streamed answer")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="upstream delay per answer")
    parser.add_argument("--clients", default="httpx,aiohttp,transport", help="comma-separated, in run order")
    parser.add_argument("--worker", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.clients.split(",")) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown clients: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        results = uvloop.run(run_worker(args))
        print(json.dumps([asdict(r) for r in results]))
    else:
        orchestrate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

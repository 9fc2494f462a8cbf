"""Soak test: the gateway under mixed streaming and plain load for minutes, with upstream faults on a schedule.

Not part of CI (it takes minutes). It starts the three fake providers of the test suite
(``tests/fakes``: real HTTP on loopback, scriptable) in this process and ``python -m llm_gateway serve``
as a child process, drives load with a bounded number of concurrent aiohttp requests, and moves
the fakes through a cycle of faults (errors, dropped connections, stalls, cut streams, error events,
broken JSON, every provider down) so that fallbacks, timeouts and cut streams keep happening.

It reports throughput, outcomes by kind, hangs (requests past ``--deadline``), silent truncations
(a stream that ended with neither ``[DONE]`` nor an error event), lost ledger rows (every admitted
request carries its own ``x-request-id``; after a graceful SIGTERM the usage ledger must hold exactly
those ids) and the gateway's RSS (``/proc/PID/status`` VmRSS every ``--rss-every`` seconds).

RSS is flat when the mean of the last third of the samples exceeds the mean of the middle third
(the first third is warm-up) by at most 10 % and at most 15 MiB. The exit status is 1 when any
row is lost, any request hung, any stream was silently truncated or RSS is not flat.

    python bench/soak.py --quick              # 60 s
    python bench/soak.py --duration 180       # 3 minutes
    python bench/soak.py --redis              # the shared shape: a throw-away redis-server on a free port
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fakes import (  # noqa: E402  (the repository root must be importable first)
    Behaviour,
    Delay,
    Drop,
    Fail,
    FailMidStream,
    FakeProvider,
    Raw,
    Reply,
    Stall,
    StreamError,
)

HOST = "127.0.0.1"
ADMIN_KEY = "soak-admin-key-0123456789"
USERS = 8
HEALTHY = Reply("one two three four five six seven eight", chunks=8, chunk_delay=0.01)
RSS_TOLERANCE_FRACTION = 0.10
RSS_TOLERANCE_BYTES = 15 * 1024 * 1024
UPSTREAM_TIMEOUT = 1.0  # stalls and slow headers below last longer than this

# The fault cycle: each phase sets every fake's default behaviour for one phase length.
# "openai" is first in the gpt-4o-mini chain, then anthropic, then groq.
PHASES: list[tuple[str, dict[str, Behaviour]]] = [
    ("healthy", {}),
    ("openai 500", {"openai": Fail(500)}),
    ("openai drops", {"openai": Drop()}),
    ("openai cuts mid-answer", {"openai": FailMidStream(after_chunks=3, reply=HEALTHY)}),
    ("openai stalls", {"openai": Stall(after_chunks=2, seconds=3 * UPSTREAM_TIMEOUT, reply=HEALTHY)}),
    ("openai error event", {"openai": StreamError(after_chunks=2, reply=HEALTHY)}),
    ("healthy", {}),
    ("openai 500, anthropic 529", {"openai": Fail(500), "anthropic": Fail(529)}),
    ("openai slow headers", {"openai": Delay(3 * UPSTREAM_TIMEOUT)}),
    ("openai broken JSON", {"openai": Raw(200, b'{"choices": [')}),
    ("every provider 503", {"openai": Fail(503), "anthropic": Fail(503), "groq": Fail(503)}),
]


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    admitted_ids: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    hangs: int = 0
    truncated: int = 0


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes], grace: float) -> float:
    """SIGTERM, wait up to ``grace`` s, then SIGKILL; returns how long the process took to exit."""
    started = time.monotonic()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return time.monotonic() - started


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--redis needs redis-server on PATH")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process, 20)
    return process, f"redis://{HOST}:{port}/0"


def gateway_env(fakes: dict[str, FakeProvider], workdir: Path, port: int, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL", "_URL"))}
    env.pop("GATEWAY_CONFIG", None)
    for fake in fakes.values():
        env.update(fake.env)
    env.update(
        {
            "HOST": HOST,
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{workdir / 'soak.db'}",
            "ADMIN_API_KEY": ADMIN_KEY,
            "LOG_LEVEL": "WARNING",
            "UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT),
            "REQUEST_TIMEOUT_SECONDS": "10",
            "COOLDOWN_FAILURES": "3",
            "COOLDOWN_SECONDS": "2",  # short, so the faulty provider keeps being tried
            "ALLOW_ANONYMOUS": "false",
            # The in-process cache grows by design up to CACHE_MAX_BYTES (64 MiB): capped small, it is
            # full within the warm-up, so what the RSS check sees after it is not the cache filling up.
            "CACHE_MAX_BYTES": str(4 * 1024 * 1024),
            "PYTHONPATH": str(REPO / "src"),
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


# -- load -----------------------------------------------------------------------------------------


async def create_keys(session: aiohttp.ClientSession, base_url: str) -> list[str]:
    keys = []
    for index in range(USERS):
        body = {"user_id": f"soak-{index}", "rate_limit_per_minute": 1_000_000, "monthly_token_budget": 10**12}
        async with session.post(
            f"{base_url}/admin/keys", json=body, headers={"authorization": f"Bearer {ADMIN_KEY}"}
        ) as response:
            if response.status != 201:
                raise RuntimeError(f"creating a key failed: {response.status} {await response.text()}")
            keys.append((await response.json())["key"])
    return keys


def classify_stream(raw: bytes) -> str:
    """``ok`` ([DONE] last, no error), ``error event`` (an error event, no [DONE]) or ``TRUNCATED``."""
    payloads = [line[6:] for line in raw.decode("utf-8", "replace").splitlines() if line.startswith("data: ")]
    errors = [p for p in payloads if p.startswith("{") and '"error"' in p[:20]]
    if payloads and payloads[-1] == "[DONE]" and not errors:
        return "ok"
    if errors and "[DONE]" not in payloads:
        return "error event"
    return "TRUNCATED"


async def one_request(
    session: aiohttp.ClientSession, base_url: str, key: str, rng: random.Random, tally: Tally, deadline: float
) -> None:
    stream = rng.random() < 0.5
    # A fifth of the plain requests repeat one of a few prompts: cache hits (cached rows in the ledger).
    text = f"repeat {rng.randrange(5)}" if not stream and rng.random() < 0.2 else f"soak {uuid.uuid4().hex}"
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    request_id = uuid.uuid4().hex
    headers = {"authorization": f"Bearer {key}", "x-request-id": request_id}
    started = time.monotonic()
    tally.requests += 1
    try:
        async with asyncio.timeout(deadline):
            async with session.post(f"{base_url}/v1/chat/completions", json=body, headers=headers) as response:
                raw = await response.read()
                status = response.status
                echoed = response.headers.get("x-request-id")
    except TimeoutError:
        tally.hangs += 1
        tally.outcomes["HANG"] += 1
        return
    except aiohttp.ClientError as exc:
        tally.outcomes[f"client error {type(exc).__name__}"] += 1
        return
    tally.latencies.append(time.monotonic() - started)
    if echoed != request_id:
        tally.outcomes["request id not echoed"] += 1
    if status == 200:
        tally.admitted_ids.add(request_id)
        if stream:
            kind = classify_stream(raw)
            tally.truncated += kind == "TRUNCATED"
            tally.outcomes[f"stream {kind}"] += 1
        else:
            ok = raw.startswith(b"{") and b'"choices"' in raw
            tally.outcomes["plain ok" if ok else "plain BAD BODY"] += 1
        return
    if status in (502, 504):  # admitted, then every deployment failed: recorded in the ledger too
        tally.admitted_ids.add(request_id)
    with contextlib.suppress(ValueError, KeyError, TypeError):
        code = json.loads(raw)["error"]["code"]
        tally.outcomes[f"{'stream' if stream else 'plain'} {status} {code}"] += 1
        return
    tally.outcomes[f"{'stream' if stream else 'plain'} {status}"] += 1


async def worker(
    session: aiohttp.ClientSession,
    base_url: str,
    keys: list[str],
    seed: int,
    tally: Tally,
    until: float,
    deadline: float,
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        await one_request(session, base_url, rng.choice(keys), rng, tally, deadline)


async def fault_schedule(fakes: dict[str, FakeProvider], phase_seconds: float, until: float, log: list[str]) -> None:
    index = 0
    while time.monotonic() < until:
        name, behaviours = PHASES[index % len(PHASES)]
        for provider, fake in fakes.items():
            fake.reset()  # also forgets the recorded requests: the fakes' memory stays flat too
            fake.set_default(behaviours.get(provider, HEALTHY))
        log.append(name)
        await asyncio.sleep(min(phase_seconds, max(0.0, until - time.monotonic())))
        index += 1
    for fake in fakes.values():
        fake.reset()
        fake.set_default(HEALTHY)


async def sample_rss(pid: int, every: float, until: float, samples: list[tuple[float, int]]) -> None:
    started = time.monotonic()
    while time.monotonic() < until:
        value = rss_bytes(pid)
        if value is not None:
            samples.append((time.monotonic() - started, value))
        await asyncio.sleep(every)


async def drive(args: argparse.Namespace, base_url: str, pid: int, fakes: dict[str, FakeProvider]) -> dict[str, Any]:
    tally, samples, phases = Tally(), [], []
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        keys = await create_keys(session, base_url)
        started = time.monotonic()
        until = started + args.duration
        await asyncio.gather(
            fault_schedule(fakes, args.phase_seconds, until, phases),
            sample_rss(pid, args.rss_every, until, samples),
            *(worker(session, base_url, keys, seed, tally, until, args.deadline) for seed in range(args.concurrency)),
        )
        elapsed = time.monotonic() - started
    return {"tally": tally, "samples": samples, "phases": phases, "elapsed": elapsed, "rss_every": args.rss_every}


# -- verdicts -------------------------------------------------------------------------------------


def rss_verdict(samples: list[tuple[float, int]]) -> dict[str, Any]:
    values = [value for _, value in samples]
    if len(values) < 6:
        return {"flat": False, "reason": "too few samples"}
    third = len(values) // 3
    middle = statistics.fmean(values[third : 2 * third])
    last = statistics.fmean(values[2 * third :])
    growth = last - middle
    flat = growth <= RSS_TOLERANCE_FRACTION * middle and growth <= RSS_TOLERANCE_BYTES
    return {
        "flat": flat,
        "first_mb": values[0] / 2**20,
        "peak_mb": max(values) / 2**20,
        "middle_third_mean_mb": middle / 2**20,
        "last_third_mean_mb": last / 2**20,
        "growth_mb": growth / 2**20,
        "growth_pct": 100 * growth / middle,
        "samples": len(values),
        "series_mb": [round(value / 2**20, 1) for value in values],
    }


def ledger_ids(database: Path) -> list[str]:
    connection = sqlite3.connect(database)
    try:
        return [row[0] for row in connection.execute("SELECT request_id FROM usage_ledger")]
    finally:
        connection.close()


def report(result: dict[str, Any], rows: list[str], rss: dict[str, Any], stop_seconds: float) -> dict[str, Any]:
    tally: Tally = result["tally"]
    in_ledger = set(rows)
    lost = tally.admitted_ids - in_ledger
    latencies = sorted(tally.latencies)
    summary = {
        "duration_s": round(result["elapsed"], 1),
        "requests": tally.requests,
        "throughput_rps": round(tally.requests / result["elapsed"], 1),
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "latency_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        "outcomes": dict(tally.outcomes.most_common()),
        "hangs": tally.hangs,
        "silent_truncations": tally.truncated,
        "admitted": len(tally.admitted_ids),
        "ledger_rows": len(rows),
        "lost_ledger_rows": len(lost),
        "unexpected_ledger_rows": len(in_ledger - tally.admitted_ids),
        "duplicate_ledger_rows": len(rows) - len(in_ledger),
        "fault_phases_run": len(result["phases"]),
        "graceful_stop_s": round(stop_seconds, 1),
        "rss": {k: round(v, 1) if isinstance(v, float) else v for k, v in rss.items()},
        "rss_every_s": result["rss_every"],
    }
    summary["pass"] = (
        not lost and tally.hangs == 0 and tally.truncated == 0 and rss["flat"] and summary["duplicate_ledger_rows"] == 0
    )
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    print(f"duration {summary['duration_s']} s, {summary['requests']} requests, {summary['throughput_rps']} req/s")
    print(f"latency p50 {summary['latency_p50_ms']} ms, p99 {summary['latency_p99_ms']} ms")
    print("outcomes:")
    for kind, count in summary["outcomes"].items():
        print(f"  {count:8d}  {kind}")
    print(f"hangs {summary['hangs']}, silent truncations {summary['silent_truncations']}")
    print(
        f"ledger: {summary['admitted']} admitted, {summary['ledger_rows']} rows, lost {summary['lost_ledger_rows']}, "
        f"unexpected {summary['unexpected_ledger_rows']}, duplicates {summary['duplicate_ledger_rows']}"
    )
    rss = summary["rss"]
    if "growth_mb" in rss:
        print(
            f"RSS: first {rss['first_mb']} MB, peak {rss['peak_mb']} MB, "
            f"middle third {rss['middle_third_mean_mb']} MB, last third {rss['last_third_mean_mb']} MB, "
            f"growth {rss['growth_mb']} MB ({rss['growth_pct']} %) "
            f"over {rss['samples']} samples: {'flat' if rss['flat'] else 'NOT FLAT'} (tolerance 10 % and 15 MiB)"
        )
    print(f"graceful stop took {summary['graceful_stop_s']} s; {summary['fault_phases_run']} fault phases")
    print("PASS" if summary["pass"] else "FAIL")


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--quick", action="store_true", help="60 s of load, 3 s fault phases")
    parser.add_argument("--concurrency", type=int, default=24, help="requests in flight (default 24)")
    parser.add_argument("--phase-seconds", type=float, default=6.0, help="length of each fault phase (default 6)")
    parser.add_argument("--deadline", type=float, default=30.0, help="a request slower than this is a hang")
    parser.add_argument("--rss-every", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--redis", action="store_true", help="run the shared shape with a throw-away redis-server")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.phase_seconds = 60.0, 3.0
    if args.duration > 540:
        parser.error("--duration must stay under 9 minutes (the soak is meant to finish within ten)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="llm-gateway-soak-"))
    fakes = {kind: FakeProvider(kind) for kind in ("openai", "anthropic", "groq")}
    children: list[subprocess.Popen[bytes]] = []
    passed = False
    try:
        for fake in fakes.values():
            fake.start()
            fake.set_default(HEALTHY)
        redis_url = None
        if args.redis:
            redis, redis_url = start_redis(workdir)
            children.append(redis)
        port = free_port()
        log_path = workdir / "gateway.log"
        with log_path.open("wb") as log:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "llm_gateway", "serve"],
                env=gateway_env(fakes, workdir, port, redis_url),
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        children.insert(0, gateway)
        wait_for_port(port, gateway, 120)
        print(f"gateway pid {gateway.pid} on {HOST}:{port}; {args.duration:.0f} s of load, logs in {log_path}")
        result = asyncio.run(drive(args, f"http://{HOST}:{port}", gateway.pid, fakes))
        stop_seconds = stop_process(gateway, grace=60)  # graceful: flushes the ledger
        rss = rss_verdict(result["samples"])
        summary = report(result, ledger_ids(workdir / "soak.db"), rss, stop_seconds)
        summary["mode"] = "shared (Redis)" if args.redis else "embedded"
        print_summary(summary)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
        passed = bool(summary["pass"])
        return 0 if passed else 1
    finally:
        for child in children:
            stop_process(child, grace=10)
        for fake in fakes.values():
            fake.stop()
        if passed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir} (gateway.log, soak.db) for a look")


if __name__ == "__main__":
    raise SystemExit(main())

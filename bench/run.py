"""``make bench``: the gateway against a direct call to a fast fake upstream, one table at the end.

Why this shape (issue 7): the machine is noisy, so every figure about the gateway is taken
side by side with the same request sent straight to the upstream in the same run. The
gateway runs as a real process (``python -m llm_gateway serve``) pinned to core 0; the fake
upstreams (bench/upstream.py) and the load generator (wrk, bench/stream_probe.py) share
core 1. Everything listens on 127.0.0.1, every run is bounded in time, and every process
started is killed at the end, however the run ends.

    python bench/run.py [--quick] [--full-pipeline] [--compare-litellm] [--only NAMES] [--output PATH]

Prints the table on stdout (progress on stderr) and writes it as JSON to
bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import full_pipeline
import litellm_compare
import many_streams
import observability
import routes
import scenarios
import workers
from harness import FULL, QUICK, Baseline, Bench
from loadgen import LoadResult, ensure_wrk
from processes import (
    CLIENT_CORE,
    GATEWAY_CORE,
    ProcessGroup,
    can_pin,
    default_nice,
    log,
    raise_fd_limit,
    set_autogroup_nice,
)
from report import Row, render, skipped_row, write_json
from servers import Servers, Skip

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "latest.json"
# The bare proxy's scenarios, in the order they run on one gateway process; embeddings last (its large answers
# must not weigh on RSS).
BARE = ("saturation", "latency", "slow", "stream", "rss", "routes", "streams", "embeddings")
# The shared shape's (PostgreSQL and Redis, bench/servers.py): run with --full-pipeline or when named in --only.
SHARED = ("pipeline", "observability", "workers")
SCENARIOS = BARE + SHARED
NEEDS_BASELINE = {"pipeline", "observability"}  # compared with the bare gateway: saturation and latency run too
VERSIONED = ("llm-gateway", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "orjson", "pydantic")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 s per run, 10,000 requests for RSS (a smoke test)")
    parser.add_argument(
        "--full-pipeline",
        action="store_true",
        help="also the shared shape's rows (PostgreSQL and Redis): " + ", ".join(SHARED),
    )
    parser.add_argument(
        "--compare-litellm", action="store_true", help="also LiteLLM proxy from a throw-away venv under /tmp"
    )
    parser.add_argument("--seconds", type=float, help="override the length of each load run")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON results (default {DEFAULT_OUTPUT})")
    parser.add_argument(
        "--only",
        type=lambda v: set(v.split(",")),
        default=None,
        help=f"a comma-separated subset of {','.join(SCENARIOS)} (start-up always runs; pipeline and "
        "observability bring saturation and latency, their baseline)",
    )
    parser.add_argument(
        "--normal-priority",
        action="store_true",
        help="do not raise the bench's priority (by default, as root: nice -10 against other load on the machine)",
    )
    parser.add_argument(
        "--gateway-src", type=Path, help="run the gateway from this source tree (its src/ dir) to A/B a change"
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway (repeatable), e.g. to measure with observability on",
    )
    args = parser.parse_args(argv)
    if bad := [item for item in args.gateway_env if "=" not in item]:
        parser.error(f"--gateway-env needs NAME=VALUE: {bad}")
    if args.only is None:
        args.only = set(BARE) | (set(SHARED) if args.full_pipeline else set())
    if unknown := args.only - set(SCENARIOS):
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    if args.only & NEEDS_BASELINE:
        args.only |= {"saturation", "latency"}
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM behaves like Ctrl-C, so the ``finally`` that reaps every child runs."""
    raise KeyboardInterrupt


def preflight() -> bool:
    """wrk present (or installed), the gateway importable from this interpreter; returns whether cores pin."""
    ensure_wrk()
    if importlib.util.find_spec("llm_gateway") is None:
        raise SystemExit(f"bench: llm_gateway is not importable by {sys.executable}; run `make bench`")
    pin = can_pin()
    if not pin:
        log("WARNING: cannot pin to cores 0 and 1 (taskset missing or fewer than 2 cores): running unpinned")
    raise_fd_limit()
    return pin


def attempt(rows: list[Row], name: str, measure: Callable[[], list[Row]]) -> None:
    """One scenario; a failure becomes a row saying so, and the other scenarios still run."""
    log(f"-- {name}")
    try:
        new = measure()
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        log(f"   failed: {exc}")
        new = [skipped_row(name, f"failed: {str(exc).splitlines()[0][:200]}")]
    for row in new:
        log("   " + scenarios.summary_line(row))
    rows.extend(new)


def bare_proxy(bench: Bench, rows: list[Row], only: set[str]) -> Baseline | None:
    """Every scenario of the bare proxy, on one gateway process kept from the start-up measurement."""
    bench.start_upstreams()
    log("-- start-up")
    gateway, startup_row = scenarios.startup(bench)
    rows.append(startup_row)
    log("   " + scenarios.summary_line(startup_row))
    scenarios.warm_up(bench, gateway)
    results: dict[str, LoadResult] = {}

    def saturation() -> list[Row]:
        row, results["direct_64"], results["gateway_64"] = scenarios.saturation(bench, gateway)
        return [row]

    def latency(connections: int) -> Callable[[], list[Row]]:
        def measure() -> list[Row]:
            row, results[f"direct_{connections}"], results[f"gateway_{connections}"] = scenarios.added_latency(
                bench, gateway, connections
            )
            return [row]

        return measure

    if "saturation" in only:
        attempt(rows, "saturation", saturation)
    if "latency" in only:
        attempt(rows, "added latency, 1 conn", latency(1))
        attempt(rows, "added latency, 8 conn", latency(8))
    if "slow" in only:
        for connections in (64, 256):
            attempt(
                rows,
                f"slow upstream, {connections} conn",
                lambda c=connections: [scenarios.slow_upstream(bench, gateway, c)],  # type: ignore[misc]
            )
    if "stream" in only:
        attempt(rows, "streaming", lambda: scenarios.streaming(bench, gateway))
        attempt(rows, "streaming throughput", lambda: [scenarios.streaming_throughput(bench, gateway)])
    if "rss" in only:
        expected = results["gateway_64"].rps if "gateway_64" in results else 1000.0
        attempt(rows, "RSS", lambda: [scenarios.rss_over_requests(bench, gateway, expected)])
    if "routes" in only:
        attempt(rows, "routes: chat, Anthropic Messages, Responses", lambda: routes.run(bench, gateway))
    if "streams" in only:
        attempt(rows, "many streams", lambda: many_streams.run(bench, gateway))
    if "embeddings" in only:  # after RSS: its ~300 kB answers must not weigh on the RSS row
        attempt(rows, "embeddings", lambda: [scenarios.embeddings(bench, gateway)])
    bench.procs.stop(gateway.child)
    missing = {"direct_64", "gateway_64", "direct_1", "gateway_1"} - results.keys()
    if missing:
        return None  # the optional sections compare with these runs, and say so when they are absent
    return Baseline(results["direct_64"], results["gateway_64"], results["direct_1"], results["gateway_1"])


def shared_shape(bench: Bench, servers: Servers, baseline: Baseline, only: set[str]) -> list[Row]:
    """The full pipeline and observability rows, on one set-up: PostgreSQL, Redis, a key made by the admin API."""
    gateway = None
    try:
        shape = full_pipeline.SharedShape.create(bench, servers)
        gateway = shape.start("gateway-pipeline")
        shape.create_key(gateway)
        rows = []
        if "pipeline" in only:
            rows += full_pipeline.run(bench, shape, gateway, baseline)
        if "observability" in only:
            rows += observability.run(bench, shape, gateway, baseline)
        return rows
    except Skip as exc:
        return [skipped_row(full_pipeline.SECTION, str(exc))]
    finally:
        if gateway is not None:
            bench.procs.stop(gateway.child)


def two_workers(bench: Bench, servers: Servers) -> list[Row]:
    try:
        return workers.run(bench, servers)
    except Skip as exc:
        return [skipped_row("two workers", str(exc))]


def meta(args: argparse.Namespace, bench: Bench, started: float) -> dict[str, Any]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "loadavg_at_start": bench.loadavg_at_start,
        "mode": "quick" if args.quick else "full",
        "seconds": round(time.monotonic() - started, 1),
        "pinned": {"gateway": GATEWAY_CORE, "upstream_and_load": CLIENT_CORE} if bench.pin else None,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {_cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}",
        "wrk": (wrk.stdout or wrk.stderr).strip().splitlines()[0] if (wrk.stdout or wrk.stderr) else None,
        "versions": versions,
        "durations": vars(bench.durations),
        "gateway_src": str(bench.gateway_src) if bench.gateway_src else None,
        "nice": bench.nice,
        "warnings": bench.warnings,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def header(info: dict[str, Any]) -> list[str]:
    pinned = info["pinned"]
    placement = (
        f"gateway on core {pinned['gateway']}, upstream and wrk on core {pinned['upstream_and_load']}"
        if pinned
        else "UNPINNED"
    )
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    lines = [
        f"llm-gateway bench, {info['date']} ({info['mode']}, {info['seconds']} s): {placement}"
        + (f", nice {info['nice']}" if info["nice"] is not None else ""),
        f"{info['machine']}, load average {info['loadavg_at_start']} at start; Python {info['python']}; {info['wrk']}",
        versions,
    ]
    if info["gateway_src"]:
        lines.append(f"gateway run from {info['gateway_src']} (--gateway-src)")
    lines.extend(f"WARNING: {w}" for w in info["warnings"])
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin = preflight()
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="llm-gateway-bench-"))
    nice = None if args.normal_priority else default_nice()
    durations = QUICK if args.quick else FULL
    if args.seconds:
        durations = dataclasses.replace(durations, load_s=args.seconds)
    if nice is not None:
        set_autogroup_nice("self", nice)  # wrk and the stream probe run in this session
    bench = Bench(
        ProcessGroup(tmp, nice=nice),
        tmp,
        durations,
        pin,
        gateway_src=args.gateway_src,
        nice=nice,
        gateway_extra_env=dict(item.split("=", 1) for item in args.gateway_env),
    )
    bench.loadavg_at_start = Path("/proc/loadavg").read_text().split()[0]
    rows: list[Row] = []
    servers = Servers(bench)
    failed = True
    try:
        baseline = bare_proxy(bench, rows, args.only)
        if args.only & NEEDS_BASELINE:
            if baseline is None:
                rows.append(skipped_row("full pipeline", "the saturation or latency runs failed"))
            else:
                attempt(rows, "full pipeline", lambda: shared_shape(bench, servers, baseline, args.only))
        if "workers" in args.only:
            attempt(rows, "two workers", lambda: two_workers(bench, servers))
        if args.compare_litellm:
            if baseline is None:
                rows.append(skipped_row("LiteLLM proxy", "needs the saturation and latency runs (see --only)"))
            else:
                attempt(rows, "LiteLLM proxy", lambda: litellm_compare.run(bench, baseline))
        failed = False
    except KeyboardInterrupt:
        log("interrupted")
    except RuntimeError as exc:
        log(f"bench failed: {exc}")
    finally:
        bench.procs.stop_all()
        servers.cleanup()
        if failed:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    info = meta(args, bench, started)
    table = render(rows, header(info))
    print(table, flush=True)
    write_json(args.output, rows, info)
    log(f"results: {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

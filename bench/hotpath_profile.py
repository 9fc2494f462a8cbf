"""Where the gateway's time goes under saturation: py-spy samples of the pinned gateway, summarised.

Why: the benchmark says how fast; this says why. It starts the same fake upstream and
gateway as bench/run.py (gateway on core 0), drives the saturation load (64 connections,
wrk on core 1), and samples the gateway's main thread with py-spy (also on core 1, in
``--nonblocking`` mode so the sampled process is never paused). The collapsed stacks are
kept, and summarised: the CPU each thread took (main loop, OTLP export threads, anything
else, in µs per request), then for the main thread self time by package, self time by
function, and the inclusive time of each step of a request (server, framework, our code,
upstream client), and each other busy thread's hottest functions.

    python bench/hotpath_profile.py [--seconds 10] [--rate 200] [--stream] [--speedscope FILE] \
        [--gateway-env NAME=VALUE ...] [--shared-shape [--cache-hit]]

``--shared-shape``: the full pipeline as bench/full_pipeline.py runs it (throw-away PostgreSQL and Redis,
a key with limits and budgets, prices; every request a cache miss unless ``--cache-hit``), to set its
profile beside the bare proxy's.

Needs py-spy (``pip install py-spy``; as root or with ptrace permitted).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from full_pipeline import SharedShape
from harness import FULL, Bench, Gateway
from loadgen import POST_LUA, WRK_TIMEOUT, ensure_wrk
from processes import ProcessGroup, can_pin, default_nice, log, set_autogroup_nice
from servers import Servers

HERE = Path(__file__).resolve().parent
MAIN_THREAD_MARK = "Server.run (uvicorn/server.py"
# py-spy --threads prefixes each stack with ``thread (<tid>): <name>``.
THREAD_FRAME = re.compile(r"^thread \((?:0x)?[0-9a-fA-F]+\): ?(.*)$")
# The loop's own frame: a leaf here is time in C under the event loop (epoll, socket I/O,
# uvloop and httptools internals), which py-spy cannot see into without --native.
LOOP_LEAF = re.compile(r"^(Runner\.run|run_forever|run_until_complete) \(asyncio/")
PACKAGES = (
    ("llm_gateway", "llm_gateway/"),
    ("uvicorn", "uvicorn/"),
    ("starlette", "starlette/"),
    ("fastapi", "fastapi/"),
    ("aiohttp", "aiohttp/"),
    ("pydantic", "pydantic"),
    ("anyio", "anyio/"),
    ("multidict/yarl", "multidict/"),
    ("asyncio", "asyncio/"),
)
# Inclusive frames worth naming: (label, substring of the frame).
STEPS = (
    ("uvicorn: parse + ASGI cycle (all of a request)", "RequestResponseCycle.run_asgi (uvicorn/"),
    ("uvicorn: data_received (httptools parse)", "HttpToolsProtocol.data_received (uvicorn/"),
    ("uvicorn: send (response write)", "RequestResponseCycle.send (uvicorn/"),
    ("middleware: RequestId", "RequestIdMiddleware.__call__ (llm_gateway/"),
    ("middleware: BodyGuard", "BodyGuardMiddleware.__call__ (llm_gateway/"),
    ("starlette: ExceptionMiddleware", "ExceptionMiddleware.__call__ (starlette/"),
    ("starlette/fastapi: routing", "Router.__call__ (starlette/routing.py"),
    ("fastapi: request_response app", "request_response.<locals>.app (fastapi/routing.py"),
    ("fastapi: solve_dependencies", "solve_dependencies (fastapi/"),
    ("fastapi/starlette: run_in_threadpool", "run_in_threadpool (starlette/"),
    ("fastapi: run_endpoint_function", "run_endpoint_function (fastapi/"),
    ("our route: create_chat_completion", "create_chat_completion (llm_gateway/"),
    ("our parse: parse_chat_request", "parse_chat_request (llm_gateway/"),
    ("our pipeline: Pipeline.complete", "Pipeline.complete (llm_gateway/"),
    ("our provider: OpenAICompatProvider.chat", "OpenAICompatProvider.chat (llm_gateway/"),
    ("aiohttp: ClientSession._request", "ClientSession._request (aiohttp/"),
    ("aiohttp: response read", "ClientResponse.read (aiohttp/"),
    ("starlette: Response.__call__", "Response.__call__ (starlette/"),
    ("starlette: Request.body", "Request.body (starlette/"),
    ("logging", "(logging/"),
    ("uuid", "(uuid.py"),
    ("telemetry: Telemetry.record", "Telemetry.record (llm_gateway/"),
    ("telemetry: spans (_trace)", "Telemetry._trace (llm_gateway/"),
    ("telemetry: GenAI metrics", "_GenAIMetrics.record (llm_gateway/"),
    ("telemetry: request log line", "RequestLog.write (llm_gateway/"),
    ("telemetry: server span middleware", "ServerSpanMiddleware.__call__ (llm_gateway/"),
    ("telemetry: Helicone worker", "HeliconeLogger._run (llm_gateway/"),
    ("opentelemetry SDK (any)", "(opentelemetry/"),
)


def record(bench: Bench, args: argparse.Namespace, raw: Path, servers: Servers) -> float:
    """Run the load and py-spy side by side; return the gateway's req/s during the recording."""
    bench.start_upstreams()
    assert bench.upstreams is not None
    gateway, script_args = start(bench, args, servers)
    bench.wrk(gateway.port, 64, "bench", *script_args, seconds=2)
    total = args.seconds + 6
    wrk_argv = ["wrk", "-t1", "-c64", f"-d{total}s", f"--timeout={WRK_TIMEOUT}", "-s", str(POST_LUA)]
    wrk_argv += [f"http://127.0.0.1:{gateway.port}/v1/chat/completions", "--", "model=bench", *script_args]
    if args.stream:
        wrk_argv.append("stream")
    load = bench.procs.start("wrk", bench.on_client_core(wrk_argv), stdout_pipe=True)
    time.sleep(3)
    spy = [py_spy(), "record", "--pid", str(gateway.pid), "--duration", str(args.seconds), "--rate", str(args.rate)]
    spy += ["--nonblocking", "--threads", "--format", "raw", "--output", str(raw)]
    subprocess.run(bench.on_client_core(spy), check=True, capture_output=True, timeout=args.seconds + 60)
    if args.speedscope:
        spy[spy.index("raw")] = "speedscope"
        spy[spy.index(str(raw))] = str(args.speedscope)
        subprocess.run(bench.on_client_core(spy), check=True, capture_output=True, timeout=args.seconds + 60)
    assert load.popen.stdout is not None
    out, _ = load.popen.communicate(timeout=total + 30)
    match = re.search(rb"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def start(bench: Bench, args: argparse.Namespace, servers: Servers) -> tuple[Gateway, list[str]]:
    """The bare gateway, or (``--shared-shape``) the full pipeline's, and the wrk script arguments it takes."""
    if not args.shared_shape:
        return bench.start_gateway(), []
    shape = SharedShape.create(bench, servers)
    gateway = shape.start("gateway-pipeline")
    key = shape.create_key(gateway)
    return gateway, [f"auth={key}"] + ([] if args.cache_hit else ["unique"])


def py_spy() -> str:
    """py-spy from PATH or beside this interpreter (a venv's bin/ need not be on PATH)."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit(f"bench: py-spy is not installed: {sys.executable} -m pip install py-spy")
    return found


Stacks = list[tuple[list[str], int]]


def read_threads(raw: Path) -> dict[str, Stacks]:
    """Every thread's stacks (root first, the thread frame removed) and sample counts, by thread name.

    Threads of one name are pooled (the SDK's export threads are named). The main thread runs the loop.
    """
    threads: dict[str, Stacks] = collections.defaultdict(list)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        name = "?"
        if frames and (match := THREAD_FRAME.match(frames[0])):
            name, frames = match.group(1) or "?", frames[1:]
        if name == "MainThread" or any(MAIN_THREAD_MARK in frame for frame in frames):
            name = "main (event loop)"  # uvloop's callbacks (protocols, timers) have no Server.run below them
        threads[name].append((frames, int(count)))
    return threads


def read_stacks(raw: Path) -> Stacks:
    """The main thread's stacks (root first) and their sample counts, from py-spy's collapsed format."""
    return read_threads(raw).get("main (event loop)", [])


def summarise_threads(threads: dict[str, Stacks], full_core_samples: float, rps: float, top: int) -> str:
    """Each thread's busy samples as a share of one core and, given the load's req/s, as µs per request.

    py-spy leaves out samples of idle threads (blocked in a wait), so a thread's count is its busy time.
    """
    counts = {name: sum(c for _, c in stacks) for name, stacks in threads.items()}
    lines = ["| thread | samples | % of a core | us/req |", "|---|---:|---:|---:|"]
    for name, count in sorted(counts.items(), key=lambda item: -item[1]):
        share = count / full_core_samples if full_core_samples else 0.0
        per_request = f"{share * 1e6 / rps:.0f}" if rps else "-"
        lines.append(f"| {name} | {count} | {100 * share:.1f} | {per_request} |")
    for name, stacks in threads.items():
        if name == "main (event loop)" or counts[name] < 0.01 * full_core_samples:
            continue
        by_function: collections.Counter[str] = collections.Counter()
        for frames, count in stacks:
            by_function[_function(frames[-1]) if frames else "?"] += count
        lines += ["", f"| thread {name}: self time by function (top) | % of thread |", "|---|---:|"]
        lines += [f"| `{fn}` | {100 * c / counts[name]:.1f} |" for fn, c in by_function.most_common(top // 2)]
    return "\n".join(lines)


def package_of(frame: str) -> str:
    for name, marker in PACKAGES:
        if marker in frame:
            return name
    return "stdlib/other"


def summarise(stacks: list[tuple[list[str], int]], top: int) -> str:
    total = sum(count for _, count in stacks) or 1
    by_package: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        if not frames:  # a sample taken between two Python frames (the thread in C only)
            continue
        leaf = frames[-1]
        key = "event loop in C (epoll, socket I/O, uvloop/httptools)" if LOOP_LEAF.match(leaf) else package_of(leaf)
        by_package[key] += count
        by_function[_function(leaf)] += count
        seen = set()
        for label, marker in STEPS:
            if label not in seen and any(marker in f for f in frames):
                inclusive[label] += count
                seen.add(label)
    lines = [f"main-thread samples: {total}", "", "| self time by package | % |", "|---|---:|"]
    lines += [f"| {name} | {100 * c / total:.1f} |" for name, c in by_package.most_common()]
    lines += ["", "| self time by function (top) | % |", "|---|---:|"]
    lines += [f"| `{name}` | {100 * c / total:.1f} |" for name, c in by_function.most_common(top)]
    lines += ["", "| inclusive time of a request's steps | % |", "|---|---:|"]
    lines += [f"| {label} | {100 * inclusive[label] / total:.1f} |" for label, _ in STEPS if inclusive[label]]
    return "\n".join(lines)


def _function(frame: str) -> str:
    """``name (path:line)`` -> ``name (path)``: lines of one function add up."""
    return re.sub(r":\d+\)$", ")", frame)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--stream", action="store_true", help="profile streaming requests instead")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--speedscope", type=Path, help="also record a speedscope profile to this file")
    parser.add_argument("--from-raw", type=Path, help="only summarise an existing collapsed-stack file")
    parser.add_argument("--gateway-src", type=Path, help="run the gateway from this source tree (its src/ dir)")
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway (repeatable), e.g. to profile with observability on",
    )
    parser.add_argument("--rps", type=float, default=0.0, help="with --from-raw: the req/s while it was recorded")
    parser.add_argument(
        "--shared-shape", action="store_true", help="profile the full pipeline (PostgreSQL, Redis, key, budgets)"
    )
    parser.add_argument("--cache-hit", action="store_true", help="with --shared-shape: one body, every request a hit")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if bad := [item for item in args.gateway_env if "=" not in item]:
        parser.error(f"--gateway-env needs NAME=VALUE: {bad}")
    if args.from_raw:
        report(args.from_raw, args, args.rps)
        return 0
    py_spy()
    ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="llm-gateway-profile-"))
    nice = default_nice()
    if nice is not None:
        set_autogroup_nice("self", nice)
    bench = Bench(
        ProcessGroup(tmp, nice=nice),
        tmp,
        FULL,
        can_pin(),
        gateway_src=args.gateway_src,
        gateway_extra_env=dict(item.split("=", 1) for item in args.gateway_env),
        nice=nice,
    )
    raw = args.raw or tmp / "profile.raw"
    servers = Servers(bench)
    try:
        rps = record(bench, args, raw, servers)
    finally:
        bench.procs.stop_all()
        servers.cleanup()
    log(f"gateway under load: {rps:,.0f} req/s while sampled; collapsed stacks: {raw}")
    report(raw, args, rps)
    return 0


def report(raw: Path, args: argparse.Namespace, rps: float) -> None:
    threads = read_threads(raw)
    print(summarise_threads(threads, args.rate * args.seconds, rps, args.top), end="\n\n")
    print(summarise(threads.get("main (event loop)", []), args.top))


if __name__ == "__main__":
    sys.exit(main())

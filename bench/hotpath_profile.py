"""Where the gateway's time goes under saturation: py-spy samples of the pinned gateway, summarised.

Why: the benchmark says how fast; this says why. It starts the same fake upstream and
gateway as bench/run.py (gateway on core 0), drives the saturation load (64 connections,
wrk on core 1), and samples the gateway's main thread with py-spy (also on core 1, in
``--nonblocking`` mode so the sampled process is never paused). The collapsed stacks are
kept, and summarised three ways: self time by package, self time by function, and the
inclusive time of each step of a request (server, framework, our code, upstream client).

    python bench/hotpath_profile.py [--seconds 10] [--rate 200] [--stream] [--speedscope FILE]

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

from harness import FULL, Bench
from loadgen import POST_LUA, WRK_TIMEOUT, ensure_wrk
from processes import ProcessGroup, can_pin, default_nice, log, set_autogroup_nice

HERE = Path(__file__).resolve().parent
MAIN_THREAD_MARK = "Server.run (uvicorn/server.py"
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
    ("middleware: BodySizeLimit", "BodySizeLimitMiddleware.__call__ (llm_gateway/"),
    ("starlette: ExceptionMiddleware", "ExceptionMiddleware.__call__ (starlette/"),
    ("starlette/fastapi: routing", "Router.__call__ (starlette/routing.py"),
    ("fastapi: request_response app", "request_response.<locals>.app (fastapi/routing.py"),
    ("fastapi: solve_dependencies", "solve_dependencies (fastapi/"),
    ("fastapi/starlette: run_in_threadpool", "run_in_threadpool (starlette/"),
    ("fastapi: run_endpoint_function", "run_endpoint_function (fastapi/"),
    ("our route: create_chat_completion", "create_chat_completion (llm_gateway/"),
    ("our parse: parse_chat_request", "parse_chat_request (llm_gateway/"),
    ("our pipeline: ChatPipeline.complete", "ChatPipeline.complete (llm_gateway/"),
    ("our provider: OpenAICompatProvider.chat", "OpenAICompatProvider.chat (llm_gateway/"),
    ("aiohttp: ClientSession._request", "ClientSession._request (aiohttp/"),
    ("aiohttp: response read", "ClientResponse.read (aiohttp/"),
    ("starlette: Response.__call__", "Response.__call__ (starlette/"),
    ("starlette: Request.body", "Request.body (starlette/"),
    ("logging", "(logging/"),
    ("uuid", "(uuid.py"),
)


def record(bench: Bench, args: argparse.Namespace, raw: Path) -> float:
    """Run the load and py-spy side by side; return the gateway's req/s during the recording."""
    bench.start_upstreams()
    assert bench.upstreams is not None
    gateway = bench.start_gateway()
    bench.wrk(gateway.port, 64, "bench", seconds=2)
    total = args.seconds + 6
    wrk_argv = ["wrk", "-t1", "-c64", f"-d{total}s", f"--timeout={WRK_TIMEOUT}", "-s", str(POST_LUA)]
    wrk_argv += [f"http://127.0.0.1:{gateway.port}/v1/chat/completions", "--", "model=bench"]
    if args.stream:
        wrk_argv.append("stream")
    load = bench.procs.start("wrk", bench.on_client_core(wrk_argv), stdout_pipe=True)
    time.sleep(3)
    spy = [py_spy(), "record", "--pid", str(gateway.pid), "--duration", str(args.seconds), "--rate", str(args.rate)]
    spy += ["--nonblocking", "--format", "raw", "--output", str(raw)]
    subprocess.run(bench.on_client_core(spy), check=True, capture_output=True, timeout=args.seconds + 60)
    if args.speedscope:
        spy[spy.index("raw")] = "speedscope"
        spy[spy.index(str(raw))] = str(args.speedscope)
        subprocess.run(bench.on_client_core(spy), check=True, capture_output=True, timeout=args.seconds + 60)
    assert load.popen.stdout is not None
    out, _ = load.popen.communicate(timeout=total + 30)
    match = re.search(rb"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def py_spy() -> str:
    """py-spy from PATH or beside this interpreter (a venv's bin/ need not be on PATH)."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit(f"bench: py-spy is not installed: {sys.executable} -m pip install py-spy")
    return found


def read_stacks(raw: Path) -> list[tuple[list[str], int]]:
    """The main thread's stacks (root first) and their sample counts, from py-spy's collapsed format."""
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if MAIN_THREAD_MARK in stack:
            stacks.append((stack.split(";"), int(count)))
    return stacks


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
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.from_raw:
        print(summarise(read_stacks(args.from_raw), args.top))
        return 0
    py_spy()
    ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="llm-gateway-profile-"))
    nice = default_nice()
    if nice is not None:
        set_autogroup_nice("self", nice)
    bench = Bench(ProcessGroup(tmp, nice=nice), tmp, FULL, can_pin(), gateway_src=args.gateway_src, nice=nice)
    raw = args.raw or tmp / "profile.raw"
    try:
        rps = record(bench, args, raw)
    finally:
        bench.procs.stop_all()
    log(f"gateway under load: {rps:,.0f} req/s while sampled; collapsed stacks: {raw}")
    print(summarise(read_stacks(raw), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

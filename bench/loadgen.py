"""The load generator: wrk (Debian's ``wrk`` package) driving ``bench/post.lua``, one thread, pinned.

Why wrk: a C event loop that costs far less CPU per request than any Python client, so it
shares the client core with the fake upstream without becoming the bottleneck; its latency
histogram is exact to the microsecond (``post.lua``'s ``done()`` prints the percentiles as
JSON). Its own per-request overhead is the same for the direct and the gateway runs, so it
cancels in the differences the benchmark reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from processes import CLIENT_CORE, HOST, log, pinned

HERE = Path(__file__).resolve().parent
POST_LUA = HERE / "post.lua"
WRK_TIMEOUT = "5s"  # per request; a stalled request counts as an error, never hangs the run


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: throughput, latency percentiles (ms) and errors of every kind summed."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int]
    # Share of the gateway's core that other processes took during the run (noise), when watched.
    foreign_cpu: float | None = None
    # CPU time the watched process spent per request: robust to noise, the figure to A/B a change by.
    cpu_us_per_request: float | None = None
    bytes_read: int = 0  # response bytes, headers included (wrk's summary.bytes)

    @property
    def bytes_per_request(self) -> float:
        return self.bytes_read / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "errors": self.errors,
            "error_detail": self.error_detail,
            "foreign_cpu_on_gateway_core": None if self.foreign_cpu is None else round(self.foreign_cpu, 3),
            "cpu_us_per_request": None if self.cpu_us_per_request is None else round(self.cpu_us_per_request, 1),
            "bytes_per_request": round(self.bytes_per_request),
        }


def ensure_wrk() -> str:
    """Path to wrk; installs it with apt when running as root, else explains how and stops."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk not found: installing it with apt-get (running as root)")
        subprocess.run(["apt-get", "update", "-qq"], check=False, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, timeout=600)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "bench: the load generator wrk is not installed.\n"
        "  Debian/Ubuntu: sudo apt-get install -y wrk\n"
        "  macOS: brew install wrk\n"
        "  from source: https://github.com/wg/wrk"
    )


def run_wrk(
    port: int,
    *,
    connections: int,
    seconds: float,
    model: str,
    place: Callable[[list[str]], list[str]] = lambda argv: pinned(CLIENT_CORE, argv),
    script_args: tuple[str, ...] = (),
    path: str = "/v1/chat/completions",
) -> LoadResult:
    """POST the chat request (``post.lua``'s ``embeddings``: an embeddings request, to ``path="/v1/embeddings"``)
    to 127.0.0.1:port for ``seconds`` over ``connections`` keep-alive connections."""
    duration = max(1, round(seconds))
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(POST_LUA),
        f"http://{HOST}:{port}{path}",
        "--",
        f"model={model}",
        *script_args,
    ]
    proc = subprocess.run(place(argv), capture_output=True, text=True, timeout=duration + 60)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return _parse(json.loads(line.removeprefix("BENCH_JSON ")))
    raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def _parse(data: dict[str, object]) -> LoadResult:
    errors = data["errors"]
    latency = data["latency_us"]
    assert isinstance(errors, dict) and isinstance(latency, dict)
    requests = int(str(data["requests"]))
    seconds = int(str(data["duration_us"])) / 1e6
    return LoadResult(
        requests=requests,
        seconds=seconds,
        rps=requests / seconds if seconds else 0.0,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        errors=sum(int(v) for v in errors.values()),
        error_detail={k: int(v) for k, v in errors.items() if v},
        bytes_read=int(str(data.get("bytes", 0))),
    )

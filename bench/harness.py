"""What every scenario stands on: durations, the fake upstreams, and starting the gateway pinned to its core.

Why one place: the direct and the gateway runs of a scenario must differ only in the hop
through the gateway, so the upstreams, the request, the gateway's configuration and its
core are decided here once and shared by every scenario.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import LoadResult, run_wrk
from processes import (
    CLIENT_CORE,
    GATEWAY_CORE,
    Child,
    ProcessGroup,
    base_env,
    core_busy_seconds,
    free_port,
    log,
    pinned,
    process_cpu_or_zero,
    wait_healthy,
    wait_ready_line,
)

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream.py"
STREAM_PROBE = HERE / "stream_probe.py"
STREAM_EVENTS = 20  # content events per streamed answer; + usage + [DONE] = 22 data: lines
STREAM_GAP_MS = 5.0
# The many-streams rows (issue 20): 50 events 20 ms apart, a realistic token rate, on an absolute schedule.
PACED_EVENTS = 50
PACED_GAP_MS = 20.0
PACED_MODEL = "bench-paced"
SLOW_DELAY_MS = 50.0
EMBEDDING_MODEL = "text-embedding-3-small"  # a group of its own in the bench's model file, on the fast upstream
START_TIMEOUT_S = 60.0
# Limits that are checked on every request but never refuse one: the bench measures the
# path, and a 429 would be counted as an error, not as speed.
NEVER_REFUSE = {
    "RATE_LIMIT_PER_MINUTE": "1000000000",
    "ANON_RATE_LIMIT_PER_MINUTE": "1000000000",
    "DEFAULT_MONTHLY_TOKEN_BUDGET": "1000000000000000",
    "ANON_MONTHLY_TOKEN_BUDGET": "1000000000000000",
}


@dataclass(frozen=True)
class Durations:
    """How long each measurement runs; ``--quick`` shortens all of them."""

    load_s: float  # one wrk run, per side
    warmup_s: float
    stream_requests: int
    rss_requests: int
    startup_runs: int
    swarm_s: float  # one many-streams run's measured window, per side (after a 1 s ramp)
    search_probes: int  # the most stream counts the many-streams search tries (each: direct and gateway)


FULL = Durations(
    load_s=10, warmup_s=2, stream_requests=200, rss_requests=100_000, startup_runs=3, swarm_s=4, search_probes=7
)
QUICK = Durations(
    load_s=2, warmup_s=1, stream_requests=30, rss_requests=10_000, startup_runs=1, swarm_s=2, search_probes=4
)


@dataclass(frozen=True)
class Upstreams:
    """Ports of the three fake upstreams, all on the client core."""

    fast: int  # answers at once; streams 20 events with no gap
    slow: int  # every answer 50 ms late
    stream: int  # streams 20 events 5 ms apart
    paced: int  # streams 50 events 20 ms apart on an absolute schedule (the many-streams rows)


@dataclass(frozen=True)
class Baseline:
    """The direct and bare-gateway runs that the optional sections are compared with."""

    direct_64: LoadResult
    gateway_64: LoadResult
    direct_1: LoadResult
    gateway_1: LoadResult


@dataclass
class Gateway:
    child: Child
    port: int
    startup_s: float

    @property
    def pid(self) -> int:
        return self.child.pid


@dataclass
class Bench:
    """The run's shared state: its processes, temp dir, durations and whether cores are pinned."""

    procs: ProcessGroup
    tmp: Path
    durations: Durations
    pin: bool
    warnings: list[str] = field(default_factory=list)
    upstreams: Upstreams | None = None
    loadavg_at_start: str = ""
    # Run the gateway from another source tree (PYTHONPATH): to measure a change before it lands.
    gateway_src: Path | None = None
    gateway_extra_env: dict[str, str] = field(default_factory=dict)  # --gateway-env: e.g. observability on
    nice: int | None = None  # see processes.default_nice

    @property
    def gateway_core(self) -> str | None:
        return GATEWAY_CORE if self.pin else None

    @property
    def client_core(self) -> str | None:
        return CLIENT_CORE if self.pin else None

    def on_gateway_core(self, argv: list[str]) -> list[str]:
        return pinned(self.gateway_core, argv, self.nice)

    def on_client_core(self, argv: list[str]) -> list[str]:
        return pinned(self.client_core, argv, self.nice)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log(f"WARNING: {message}")

    # --- fake upstreams -------------------------------------------------------------------
    def start_upstream(self, name: str, *args: str) -> int:
        argv = self.on_client_core([sys.executable, str(UPSTREAM), "--port", "0", *args])
        child = self.procs.start(name, argv, env=base_env(), stdout_pipe=True)
        return wait_ready_line(child, timeout=START_TIMEOUT_S)

    def start_upstreams(self) -> Upstreams:
        events = str(STREAM_EVENTS)
        self.upstreams = Upstreams(
            fast=self.start_upstream("upstream-fast", "--stream-events", events),
            slow=self.start_upstream("upstream-slow", "--delay-ms", str(SLOW_DELAY_MS), "--stream-events", events),
            stream=self.start_upstream(
                "upstream-stream", "--stream-events", events, "--event-gap-ms", str(STREAM_GAP_MS)
            ),
            paced=self.start_upstream(
                "upstream-paced", "--stream-events", str(PACED_EVENTS), "--event-gap-ms", str(PACED_GAP_MS), "--paced"
            ),
        )
        return self.upstreams

    # --- the gateway ----------------------------------------------------------------------
    def gateway_config(self, price: dict[str, str] | None = None) -> Path:
        """Model groups: ``bench`` (the fast upstream, as provider ``openai``), ``bench-slow``, ``bench-stream``,
        ``bench-paced`` and ``text-embedding-3-small`` (the fast upstream's ``/v1/embeddings``; the file replaces
        the built-in groups). ``openai`` translates the Responses API to chat: the fake upstreams speak only chat.
        ``price`` (the shared shape's USD budgets): a ``price:`` block on every deployment, in a file of its own,
        so the bare-proxy rows stay as they were."""
        assert self.upstreams is not None
        path = self.tmp / ("gateway-priced.yaml" if price else "gateway.yaml")
        priced = {"price": price} if price else {}
        # JSON is YAML: no quoting surprises in URLs.
        config = {
            "providers": {
                "openai": {"type": "openai", "responses": "translated"},
                "slow": {"type": "openai", "api_key": "bench", "base_url": self._url(self.upstreams.slow)},
                "stream": {"type": "openai", "api_key": "bench", "base_url": self._url(self.upstreams.stream)},
                "paced": {"type": "openai", "api_key": "bench", "base_url": self._url(self.upstreams.paced)},
            },
            "models": {
                "bench": [{"provider": "openai", "model": "bench", **priced}],
                "bench-slow": [{"provider": "slow", "model": "bench", **priced}],
                "bench-stream": [{"provider": "stream", "model": "bench", **priced}],
                PACED_MODEL: [{"provider": "paced", "model": "bench", **priced}],
                EMBEDDING_MODEL: [{"provider": "openai", "model": EMBEDDING_MODEL}],
            },
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def gateway_env(self, port: int, price: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
        assert self.upstreams is not None
        env = base_env()
        env.update(
            {
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "OPENAI_BASE_URL": self._url(self.upstreams.fast),
                "OPENAI_API_KEY": "bench",
                "LOG_LEVEL": "WARNING",
                "DATABASE_URL": f"sqlite:///{self.tmp / 'bench.db'}",
                "GATEWAY_CONFIG": str(self.gateway_config(price)),
                "CACHE_TTL_SECONDS": "0",  # the bare proxy: every request goes upstream
                **NEVER_REFUSE,
            }
        )
        if self.gateway_src is not None:
            env["PYTHONPATH"] = str(self.gateway_src)
        env.update(self.gateway_extra_env)
        env.update(extra)
        return env

    def start_gateway(
        self,
        name: str = "gateway",
        *,
        price: dict[str, str] | None = None,
        cores: str | None = None,
        ready: str = "/health",
        **env_extra: str,
    ) -> Gateway:
        """Start ``python -m llm_gateway serve`` on the gateway core (or ``cores``, e.g. "0,1"); time it to a
        200 on ``ready`` (``/ready`` when PostgreSQL must be migrated first: start-up does not wait for it)."""
        port = free_port()
        env = self.gateway_env(port, price, **env_extra)
        serve = [sys.executable, "-m", "llm_gateway", "serve"]
        argv = pinned(cores if self.pin else None, serve, self.nice) if cores else self.on_gateway_core(serve)
        started = time.perf_counter()
        child = self.procs.start(name, argv, env=env, cwd=self.tmp)
        startup = wait_healthy(child, port, ready, START_TIMEOUT_S, started)
        return Gateway(child, port, startup)

    def cli(self, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
        """``python -m llm_gateway ARGS`` with the gateway's environment (same database)."""
        env = self.gateway_env(free_port(), None, **env_extra)
        argv = [sys.executable, "-m", "llm_gateway", *args]
        return subprocess.run(argv, env=env, cwd=self.tmp, capture_output=True, text=True, timeout=120)

    # --- load -----------------------------------------------------------------------------
    def wrk(
        self,
        port: int,
        connections: int,
        model: str,
        *script_args: str,
        seconds: float | None = None,
        watch: int | None = None,
        path: str = "/v1/chat/completions",
    ) -> LoadResult:
        """One wrk run; with ``watch`` (the pid on the gateway core), also how much of that core others took."""
        core = int(GATEWAY_CORE)
        busy, own, wall = core_busy_seconds(core), process_cpu_or_zero(watch), time.monotonic()
        result = run_wrk(
            port,
            connections=connections,
            seconds=seconds if seconds is not None else self.durations.load_s,
            model=model,
            place=self.on_client_core,
            script_args=script_args,
            path=path,
        )
        if watch is None:
            return result
        elapsed = time.monotonic() - wall
        used = process_cpu_or_zero(watch) - own
        per_request = used / result.requests * 1e6 if result.requests else None
        foreign = max(0.0, (core_busy_seconds(core) - busy) - used) / elapsed if self.pin else None
        return dataclasses.replace(result, foreign_cpu=foreign, cpu_us_per_request=per_request)

    def stream_probe(self, port: int, model: str, requests: int, auth: str = "") -> dict[str, object]:
        argv = [
            sys.executable,
            str(STREAM_PROBE),
            "--url",
            f"{self._url(port)}/chat/completions",
            "--model",
            model,
            "--requests",
            str(requests),
            "--events",
            str(STREAM_EVENTS + 2),
        ]
        if auth:
            argv += ["--auth", auth]
        proc = subprocess.run(self.on_client_core(argv), capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"stream probe failed: {proc.stderr.strip()[-500:]}")
        result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    @staticmethod
    def _url(port: int) -> str:
        return f"http://127.0.0.1:{port}/v1"

"""Every observability backend on, as production runs it, against observability off (issue 20): CPU per request added.

Why end to end: bench/telemetry_cost.py prices each piece in isolation (``Telemetry`` around a stub app,
in process); this is what the whole gateway pays, export threads and all, in the full pipeline's shared
shape. Two gateways of that shape run side by side on the gateway core (the idle one costs nothing
measurable): "off" is the full pipeline as bench/full_pipeline.py measures it (Prometheus, always on, and
WARNING logs); "on" adds OTLP traces and metrics (``OTEL_EXPORTER_OTLP_ENDPOINT``) and Helicone
(``HELICONE_API_KEY``/``HELICONE_BASE_URL``), both to bench/sink.py on the client core, and the INFO JSON
request log line (to the gateway's log file). The two are measured alternately, cache miss at 64
connections, ``rounds`` times (2; 1 with ``--quick``), and compared by the median of each side's CPU
per request; one pair at 1 connection gives the added latency.
"""

from __future__ import annotations

import statistics
import sys

from full_pipeline import SharedShape
from harness import HERE, Baseline, Bench, Gateway
from loadgen import LoadResult
from processes import base_env, free_port, wait_ready_line
from report import Row, compare_row, signed_ms

SINK = HERE / "sink.py"
ADDED_CPU_TARGET_US = 100.0
FULL_ROUNDS, QUICK_ROUNDS = 2, 1


def start_sink(bench: Bench) -> str:
    argv = bench.on_client_core([sys.executable, str(SINK), "--port", str(free_port())])
    child = bench.procs.start("sink", argv, env=base_env(), stdout_pipe=True)
    return f"http://127.0.0.1:{wait_ready_line(child, timeout=60)}"


def on_env(sink: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        "OTEL_SERVICE_NAME": "llm-gateway-bench",
        "HELICONE_API_KEY": "bench-helicone",
        "HELICONE_BASE_URL": sink,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }


def run(bench: Bench, shape: SharedShape, off: Gateway, baseline: Baseline) -> list[Row]:
    sink = start_sink(bench)
    on = shape.start("gateway-observability", **on_env(sink))
    try:
        return measure(bench, shape, off, on, baseline)
    finally:
        bench.procs.stop(on.child)


def measure(bench: Bench, shape: SharedShape, off: Gateway, on: Gateway, baseline: Baseline) -> list[Row]:
    auth = f"auth={shape.key}"
    bench.wrk(on.port, 64, "bench", auth, "unique", seconds=bench.durations.warmup_s)  # export connections, imports
    rounds = QUICK_ROUNDS if bench.durations.load_s < 5 else FULL_ROUNDS
    offs: list[LoadResult] = []
    ons: list[LoadResult] = []
    for _ in range(rounds):
        offs.append(bench.wrk(off.port, 64, "bench", auth, "unique", watch=off.pid))
        ons.append(bench.wrk(on.port, 64, "bench", auth, "unique", watch=on.pid))
    off_1 = bench.wrk(off.port, 1, "bench", auth, "unique", watch=off.pid)
    on_1 = bench.wrk(on.port, 1, "bench", auth, "unique", watch=on.pid)
    cpu_off = statistics.median(r.cpu_us_per_request or 0.0 for r in offs)
    cpu_on = statistics.median(r.cpu_us_per_request or 0.0 for r in ons)
    added = cpu_on - cpu_off
    each = ", ".join(
        f"{a.cpu_us_per_request or 0:,.0f} / {b.cpu_us_per_request or 0:,.0f}" for a, b in zip(offs, ons, strict=True)
    )
    errors = sum(r.errors for r in ons)
    note = (
        f"OTLP traces and metrics, Helicone (both to bench/sink.py), INFO JSON request log; vs off: "
        f"{added:+,.0f} us of CPU per request (median of {rounds}; off / on by round: {each}); "
        f"at 1 conn over off: p50 {signed_ms(on_1.p50_ms - off_1.p50_ms)} ms, "
        f"p99 {signed_ms(on_1.p99_ms - off_1.p99_ms)} ms; per piece: bench/telemetry_cost.py"
    )
    data = {"cpu_us_off": cpu_off, "cpu_us_on": cpu_on, "added_cpu_us": added, "rounds": rounds}
    return [
        compare_row(
            "observability off, pipeline miss, 64 conn",
            baseline.direct_64,
            offs[-1],
            note="Prometheus only (always on), WARNING logs: the full pipeline as its rows measure it",
            extra={"runs": [r.as_dict() for r in offs]},
        ),
        compare_row(
            "observability on, pipeline miss, 64 conn",
            baseline.direct_64,
            ons[-1],
            target=f"<= +{ADDED_CPU_TARGET_US:.0f} us CPU/req over off",
            met=added <= ADDED_CPU_TARGET_US and errors == 0,
            note=note,
            extra={
                **data,
                "runs": [r.as_dict() for r in ons],
                "one_conn": {"off": off_1.as_dict(), "on": on_1.as_dict()},
            },
        ),
    ]

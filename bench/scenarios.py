"""The bare-proxy scenarios of issue 7, each measured direct and through the gateway in the same run.

Saturation, added latency at 1 and 8 connections, a slow upstream at 64 and 256
connections, streaming (time to first byte and total time), start-up to a healthy
``/health``, RSS over 100,000 requests, and (issue 14) embeddings at saturation. Each
function returns table rows; targets are the issue's, and a row says whether its target
was met.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from harness import EMBEDDING_MODEL, Bench, Gateway
from loadgen import LoadResult
from processes import cpu_seconds, rss_kib
from report import Row, compare_row, info_row, ms, pct, rps, signed_ms

UPSTREAM_HEADROOM = 3.0  # the direct run must reach this many times the gateway's rate
SATURATION_TARGET_RPS = 2500
ADDED_P50_TARGET_MS = 0.5
ADDED_P99_TARGET_MS = 2.0
SLOW_RATIO_TARGET = 0.90
STREAM_TTFB_TARGET_MS = 1.0
STREAM_TOTAL_TARGET_MS = 2.0
STARTUP_TARGET_S = 1.5
RSS_TARGET_BYTES = 120_000_000
RSS_FLAT_KIB = 2048  # growth over the second half of the requests still counted as flat
EMBEDDINGS_PATH = "/v1/embeddings"
EMBEDDING_INPUTS = 16  # post.lua's `embeddings` body: 16 strings, "encoding_format": "float"


def startup(bench: Bench) -> tuple[Gateway, Row]:
    """Start the gateway ``startup_runs`` times; keep the last one running for the other scenarios."""
    times: list[float] = []
    gateway: Gateway | None = None
    for i in range(bench.durations.startup_runs):
        gateway = bench.start_gateway()
        times.append(gateway.startup_s)
        if i < bench.durations.startup_runs - 1:
            bench.procs.stop(gateway.child)
    assert gateway is not None
    median = statistics.median(times)
    runs = ", ".join(f"{t:.2f}" for t in times)
    row = info_row(
        "start-up to healthy /health",
        f"{median:.2f} s (median of {len(times)})",
        target=f"<= {STARTUP_TARGET_S} s",
        met=median <= STARTUP_TARGET_S,
        note=f"start-up runs (s): {runs}; from spawning `python -m llm_gateway serve` to the first 200 of /health",
        startup_s=times,
        rss_idle_kib=rss_kib(gateway.pid),
    )
    return gateway, row


def warm_up(bench: Bench, gateway: Gateway) -> None:
    """Fill connection pools and caches on both paths before anything is measured."""
    assert bench.upstreams is not None
    seconds = bench.durations.warmup_s
    bench.wrk(bench.upstreams.fast, 64, "bench", seconds=seconds)
    bench.wrk(gateway.port, 64, "bench", seconds=seconds, watch=gateway.pid)


def saturation(bench: Bench, gateway: Gateway) -> tuple[Row, LoadResult, LoadResult]:
    """64 connections, non-streaming; checks that the upstream had headroom (it is not what is measured)."""
    assert bench.upstreams is not None
    direct = bench.wrk(bench.upstreams.fast, 64, "bench")
    through, gateway_cpu = _gateway_run(bench, gateway, "bench")
    note, headroom = _saturation_note(bench, "saturation", direct, through, gateway_cpu)
    row = compare_row(
        "saturation, 64 conn",
        direct,
        through,
        target=f">= {SATURATION_TARGET_RPS:,} req/s",
        met=through.rps >= SATURATION_TARGET_RPS and through.errors == 0,
        note=note,
        extra={"upstream_headroom": headroom, "gateway_cpu": gateway_cpu},
    )
    return row, direct, through


def embeddings(bench: Bench, gateway: Gateway) -> Row:
    """Saturation's sibling for ``POST /v1/embeddings`` (issue 14): 64 connections, 16 inputs a request, each
    answer 16 vectors of 1,536 floats (~300 kB of JSON), direct vs gateway with the cache off, after a warm-up
    of both (the gateway's first embeddings requests pay one-off costs the chat warm-up did not)."""
    assert bench.upstreams is not None
    fast, seconds = bench.upstreams.fast, bench.durations.warmup_s
    bench.wrk(fast, 64, EMBEDDING_MODEL, "embeddings", seconds=seconds, path=EMBEDDINGS_PATH)
    bench.wrk(gateway.port, 64, EMBEDDING_MODEL, "embeddings", seconds=seconds, path=EMBEDDINGS_PATH)
    direct = bench.wrk(fast, 64, EMBEDDING_MODEL, "embeddings", path=EMBEDDINGS_PATH)
    through, gateway_cpu = _gateway_run(bench, gateway, EMBEDDING_MODEL, "embeddings", path=EMBEDDINGS_PATH)
    note, headroom = _saturation_note(bench, "embeddings", direct, through, gateway_cpu)
    answer_kb = direct.bytes_per_request / 1000 if direct.bytes_per_request else 0.0
    note = f"{EMBEDDING_INPUTS} inputs a request, ~{answer_kb:,.0f} kB an answer; {note}"
    return compare_row(
        f"embeddings, 64 conn, {EMBEDDING_INPUTS} inputs",
        direct,
        through,
        note=note,
        extra={"upstream_headroom": headroom, "gateway_cpu": gateway_cpu},
    )


def _gateway_run(
    bench: Bench, gateway: Gateway, model: str, *script_args: str, path: str = "/v1/chat/completions"
) -> tuple[LoadResult, float]:
    """One wrk run through the gateway, and the share of its core the gateway used during it."""
    cpu_before, wall_before = cpu_seconds(gateway.pid), time.monotonic()
    through = bench.wrk(gateway.port, 64, model, *script_args, watch=gateway.pid, path=path)
    return through, (cpu_seconds(gateway.pid) - cpu_before) / (time.monotonic() - wall_before)


def _saturation_note(
    bench: Bench, name: str, direct: LoadResult, through: LoadResult, gateway_cpu: float
) -> tuple[str, float]:
    """The headroom and CPU note of a saturation-style row; warns when the upstream may be the bottleneck."""
    per_request = through.cpu_us_per_request or 0.0
    headroom = direct.rps / through.rps if through.rps else float("inf")
    note = (
        f"the direct run reached {headroom:.1f}x the gateway's rate (upstream not the bottleneck when >= "
        f"{UPSTREAM_HEADROOM:.0f}x); the gateway used {gateway_cpu * 100:.0f} % of its core, "
        f"{per_request:,.0f} us of CPU per request (a rate of {1e6 / max(per_request, 1):,.0f} req/s if CPU-bound)"
    )
    if headroom < UPSTREAM_HEADROOM:
        bench.warn(
            f"{name}: the direct run reached only {headroom:.1f}x the gateway's rate (want >= "
            f"{UPSTREAM_HEADROOM:.0f}x): the upstream or load generator may be the bottleneck"
        )
        note = "UPSTREAM MAY BE THE BOTTLENECK: " + note
    return note, headroom


def added_latency(bench: Bench, gateway: Gateway, connections: int) -> tuple[Row, LoadResult, LoadResult]:
    """Closed-loop latency at low concurrency: the gateway's p50/p99 minus the direct ones."""
    assert bench.upstreams is not None
    direct = bench.wrk(bench.upstreams.fast, connections, "bench")
    through = bench.wrk(gateway.port, connections, "bench", watch=gateway.pid)
    target, met = "", None
    if connections == 1:
        target = f"added p50 <= {ADDED_P50_TARGET_MS}, p99 <= {ADDED_P99_TARGET_MS:g} ms"
        met = (
            through.p50_ms - direct.p50_ms <= ADDED_P50_TARGET_MS
            and through.p99_ms - direct.p99_ms <= ADDED_P99_TARGET_MS
            and through.errors == 0
        )
    row = compare_row(f"added latency, {connections} conn", direct, through, target=target, met=met)
    return row, direct, through


def slow_upstream(bench: Bench, gateway: Gateway, connections: int) -> Row:
    """50 ms per answer: throughput is concurrency / 50 ms if the gateway carries the concurrency."""
    assert bench.upstreams is not None
    direct = bench.wrk(bench.upstreams.slow, connections, "bench")
    through = bench.wrk(gateway.port, connections, "bench-slow", watch=gateway.pid)
    ratio = through.rps / direct.rps if direct.rps else 0.0
    return compare_row(
        f"slow upstream (50 ms), {connections} conn",
        direct,
        through,
        target=f">= {SLOW_RATIO_TARGET * 100:.0f} % of direct",
        met=ratio >= SLOW_RATIO_TARGET and through.errors == 0,
    )


def streaming(bench: Bench, gateway: Gateway) -> list[Row]:
    """Sequential streams of 20 events 5 ms apart: time to first byte and total time, direct vs gateway."""
    assert bench.upstreams is not None
    n = bench.durations.stream_requests
    direct = bench.stream_probe(bench.upstreams.stream, "bench", n)
    through = bench.stream_probe(gateway.port, "bench-stream", n)
    rows = []
    for key, label, limit in (
        ("ttfb_ms", "stream: time to first byte, 1 conn", STREAM_TTFB_TARGET_MS),
        ("total_ms", "stream: total, 20 events 5 ms apart", STREAM_TOTAL_TARGET_MS),
    ):
        d, g = _percentiles(direct, key), _percentiles(through, key)
        errors = (int(str(direct["errors"])), int(str(through["errors"])))
        rows.append(_percentile_row(label, d, g, errors, limit, {"direct": direct, "gateway": through}))
    return rows


def _percentiles(result: dict[str, Any], key: str) -> tuple[float, float]:
    values = result.get(key) or {}
    return float(values.get("p50", float("nan"))), float(values.get("p99", float("nan")))


def _percentile_row(
    label: str,
    direct: tuple[float, float],
    gateway: tuple[float, float],
    errors: tuple[int, int],
    limit_ms: float,
    data: dict[str, Any],
) -> Row:
    added = (gateway[0] - direct[0], gateway[1] - direct[1])
    cells = {
        "direct p50 / p99 ms": f"{ms(direct[0])} / {ms(direct[1])}",
        "gateway p50 / p99 ms": f"{ms(gateway[0])} / {ms(gateway[1])}",
        "added p50 / p99 ms": f"{signed_ms(added[0])} / {signed_ms(added[1])}",
        "errors d / gw": f"{errors[0]} / {errors[1]}",
    }
    met = added[0] <= limit_ms and errors[1] == 0
    data = {**data, "added_p50_ms": round(added[0], 3), "added_p99_ms": round(added[1], 3)}
    return Row(label, cells, data, target=f"added p50 <= {limit_ms:g} ms", met=met)


def streaming_throughput(bench: Bench, gateway: Gateway) -> Row:
    """Streams of 20 events with no gap at 64 connections: the relay's cost per event, as throughput."""
    assert bench.upstreams is not None
    direct = bench.wrk(bench.upstreams.fast, 64, "bench", "stream")
    through = bench.wrk(gateway.port, 64, "bench", "stream", watch=gateway.pid)
    return compare_row("streaming, 64 conn, 20 events", direct, through)


def rss_over_requests(bench: Bench, gateway: Gateway, expected_rps: float) -> Row:
    """VmRSS before and after N requests at 64 connections, read at four checkpoints; flat = no growth late on."""
    target_requests = bench.durations.rss_requests
    chunk_s = max(1.0, target_requests / 4 / max(expected_rps, 1.0))
    deadline = time.monotonic() + max(120.0, 8 * target_requests / max(expected_rps, 1.0))
    before = rss_kib(gateway.pid)
    checkpoints: list[tuple[int, int]] = [(0, before)]
    served = errors = 0
    while served < target_requests and time.monotonic() < deadline:
        result = bench.wrk(gateway.port, 64, "bench", seconds=chunk_s, watch=gateway.pid)
        served += result.requests
        errors += result.errors
        checkpoints.append((served, rss_kib(gateway.pid)))
    after = checkpoints[-1][1]
    half = next((kib for count, kib in checkpoints if count >= served / 2), before)
    late_growth = after - half
    flat = late_growth <= RSS_FLAT_KIB
    trail = ", ".join(f"{count:,}: {_mb(kib)}" for count, kib in checkpoints)
    return info_row(
        f"RSS after {served:,} requests",
        f"{_mb(before)} -> {_mb(after)} MB",
        target="<= 120 MB, flat",
        met=after * 1024 <= RSS_TARGET_BYTES and flat and served >= target_requests and errors == 0,
        note=(
            f"VmRSS (MB) by requests served: {trail}; growth over the second half {late_growth / 1024:+.1f} MiB "
            f"({'flat' if flat else 'GROWING'}); errors {errors}"
        ),
        rss_kib_checkpoints=checkpoints,
        requests=served,
        errors=errors,
    )


def _mb(kib: int) -> str:
    return f"{kib * 1024 / 1e6:.1f}"


def summary_line(row: Row) -> str:
    """One short line per row for progress output on stderr."""
    data = row.data
    if "direct" in data and isinstance(data["direct"], dict) and "rps" in data["direct"]:
        return (
            f"{row.scenario}: direct {rps(data['direct']['rps'])} req/s, gateway {rps(data['gateway']['rps'])} "
            f"req/s ({pct(data.get('ratio'))}), added p50 {signed_ms(data['added_p50_ms'])} ms"
        )
    return f"{row.scenario}: {' '.join(row.cells.values())}"

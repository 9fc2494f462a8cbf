"""N concurrent streamed chat completions, held for a while: how late each event arrives against its schedule.

Why a client of its own: the many-streams rows (issue 20) need thousands of concurrent streams of
50 events 20 ms apart (``upstream.py --paced``: event k leaves the upstream at arrival + k x 20 ms)
and, per event, its lateness against that schedule. wrk sees whole responses only; aiohttp costs
tens of microseconds per chunk, which at 50,000 events/s would make this process, on the client
core beside the upstream, the bottleneck. So: raw asyncio protocols on uvloop and httptools' C
parser, one timestamp per read, an SSE event counted by its blank line.

Lateness of event k (k = 1..49) = (its arrival - k x gap) - min over the stream's events j of (arrival_j -
j x gap): how much later than the stream's most punctual event it came, against the upstream's schedule,
jitter and queueing both. Anchoring on the most punctual event rather than on event 0 keeps a late
first event (time to first byte, measured elsewhere) from making every later one look early. Run once
straight at the upstream and once through the gateway, the difference is the gateway's.

Each of N slots keeps one keep-alive connection busy: slot i starts at i x ramp / N (spread phases,
no connection burst), then sends its next request as soon as a stream ends. Only streams sent after
the ramp and finished before new sends stop are measured, so every measured stream ran among N.

Is this client the bottleneck? It reports its own CPU share (getrusage over the run's wall time)
and the lag of a 5 ms ticker on its loop (p99): a loop that lags stamps events late. bench/run.py
(many_streams.py) flags a direct run whose client lags.

    python bench/stream_swarm.py --port 8001 --model bench-paced --streams 1000 --seconds 5 [--ramp 1]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import resource
import sys
import time
from typing import Any, cast

import httptools
import orjson
import uvloop

EVENTS = 50  # content events a stream carries; then usage and [DONE]
TAIL_EVENTS = 2
GAP_MS = 20.0
TICK_S = 0.005
STREAM_TIMEOUT_S = 30.0


def percentile(ordered: Any, pct: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty sequence."""
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def summary(values: Any) -> dict[str, float]:
    if not len(values):
        return {}
    ordered = sorted(values)
    return {
        "p50": round(percentile(ordered, 50), 3),
        "p90": round(percentile(ordered, 90), 3),
        "p99": round(percentile(ordered, 99), 3),
        "max": round(ordered[-1], 3),
        "mean": round(sum(ordered) / len(ordered), 3),
    }


class Run:
    """What every slot reports into: the measured window, the lateness samples, the errors."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.gap = args.gap_ms / 1000
        self.expected = args.events + TAIL_EVENTS
        self.events = args.events
        self.lateness = array.array("d")  # ms
        self.gaps = array.array("d")  # ms: arrival - previous arrival - gap
        self.measured = 0
        self.relayed = 0  # SSE events received by every stream, measured or not
        self.errors: list[str] = []
        self.measure_from = 0.0
        self.stop_sending = 0.0
        self.request = b""


class Slot(asyncio.Protocol):
    """One keep-alive connection that streams one answer after another until the run stops sending."""

    def __init__(self, run: Run, done: asyncio.Future[None]) -> None:
        self.run = run
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sent = 0.0
        self.arrivals: list[float] = []
        self.tail_newline = False
        self.failed = ""

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"parse error: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.done.done():
            if self.sent:
                self.run.errors.append(f"connection lost mid-stream ({exc})")
            self.done.set_result(None)

    # httptools
    def on_body(self, body: bytes) -> None:
        now = time.monotonic()
        count = body.count(b"\n\n") + (1 if self.tail_newline and body[:1] == b"\n" else 0)
        self.tail_newline = body[-1:] == b"\n"
        self.arrivals.extend([now] * count)
        self.run.relayed += count

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        now = time.monotonic()
        if status != 200:
            self.run.errors.append(f"status {status}")
        elif len(self.arrivals) != self.run.expected:
            self.run.errors.append(f"{len(self.arrivals)} events, expected {self.run.expected}")
        elif self.sent >= self.run.measure_from and now <= self.run.stop_sending:
            self._record()
        self._send()

    # ours
    def _record(self) -> None:
        run, arrivals, gap = self.run, self.arrivals, self.run.gap
        offsets = [arrivals[k] - k * gap for k in range(run.events)]
        anchor = min(offsets)  # the stream's most punctual event stands for the upstream's schedule
        for k in range(1, run.events):
            run.lateness.append((offsets[k] - anchor) * 1000)
            run.gaps.append((arrivals[k] - arrivals[k - 1] - gap) * 1000)
        run.measured += 1

    def _send(self) -> None:
        self.arrivals = []
        self.tail_newline = False
        if self.transport is None or time.monotonic() >= self.run.stop_sending:
            self.sent = 0.0
            if self.transport is not None:
                self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.sent = time.monotonic()
        self.transport.write(self.run.request)

    def _fail(self, why: str) -> None:
        self.run.errors.append(why)
        if self.transport is not None:
            self.transport.close()


def build_request(args: argparse.Namespace) -> bytes:
    body = orjson.dumps(
        {
            "model": args.model,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Tell me a short story."},
            ],
            "max_tokens": 256,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    head = (
        f"POST {args.path} HTTP/1.1\r\nhost: 127.0.0.1:{args.port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
    )
    if args.auth:
        head += f"authorization: Bearer {args.auth}\r\n"
    return head.encode() + b"\r\n" + body


async def ticker(lags: array.array[float], until: float) -> None:
    """The client's own loop lag: how late a 5 ms timer fires, sampled for the whole run."""
    while (now := time.monotonic()) < until:  # not loop.time(): uvloop's clock ticks in whole milliseconds
        await asyncio.sleep(TICK_S)
        lags.append((time.monotonic() - now - TICK_S) * 1000)


async def one_slot(run: Run, port: int, delay: float, hard_stop: float) -> None:
    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    while time.monotonic() < run.stop_sending:
        done: asyncio.Future[None] = loop.create_future()
        try:
            transport, _ = await loop.create_connection(lambda d=done: Slot(run, d), "127.0.0.1", port)
        except OSError as exc:
            run.errors.append(f"connect: {exc}")
            await asyncio.sleep(0.1)
            continue
        try:
            await asyncio.wait_for(done, timeout=max(0.1, hard_stop - time.monotonic()))
        except TimeoutError:
            run.errors.append("stream timed out")
        finally:
            transport.close()
        if time.monotonic() >= hard_stop:
            return


async def swarm(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args)
    run.request = build_request(args)
    start = time.monotonic()
    run.measure_from = start + args.ramp
    run.stop_sending = run.measure_from + args.seconds
    hard_stop = run.stop_sending + STREAM_TIMEOUT_S
    lags: array.array[float] = array.array("d")
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    tick = asyncio.create_task(ticker(lags, run.stop_sending))
    slots = [one_slot(run, args.port, i * args.ramp / args.streams, hard_stop) for i in range(args.streams)]
    await asyncio.gather(*slots)
    await tick
    wall = time.monotonic() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {
        "streams": args.streams,
        "measured_streams": run.measured,
        "events": len(run.lateness),
        "relayed_events": run.relayed,
        "errors": len(run.errors),
        "first_errors": sorted(set(run.errors))[:3],
        "lateness_ms": summary(run.lateness),
        "gap_ms": summary(run.gaps),
        "client_cpu_s": round(cpu, 3),
        "client_cpu_share": round(cpu / wall, 3),
        "client_loop_lag_ms": summary(lags),
        "wall_s": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--model", default="bench-paced")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window, after the ramp")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which the slots start")
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--gap-ms", type=float, default=GAP_MS)
    parser.add_argument("--auth", default="")
    args = parser.parse_args(argv)
    result = uvloop.run(swarm(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

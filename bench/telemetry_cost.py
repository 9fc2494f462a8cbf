"""What observability costs per request, in isolation: ``Telemetry`` around a do-nothing chat app.

Each configuration wraps a stub ASGI app (it records one realistic ``RequestRecord`` and answers
200) in ``Telemetry.wrap`` -- the early-refusal recorder and, with tracing on, the server span --
and drives it ``--requests`` times on one event loop, alternating a plain and a streamed answer.
Two figures per configuration:

- ``loop us``: CPU of the event-loop thread per request (``time.thread_time``), what a request pays;
- ``process us``: CPU of the whole process per request (``time.process_time``), background export
  threads and the Helicone worker included, measured until everything queued has been sent.

Exporters are real (OTLP over HTTP, Helicone over the gateway's pooled HTTP/1.1 transport) and
point at ``bench/sink.py``, started here on a free loopback port. The machine is shared, so each
figure is the best of ``--rounds``. ``h`` (Helicone without OTel) minus ``b`` is what one Helicone
log costs, free of the OTLP export thread's noise.
``python bench/telemetry_cost.py [--requests 20000] [--rounds 3] [--only b,h]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_gateway.telemetry import AttemptRecord, RequestRecord, Telemetry, TelemetrySettings, setup_logging

HERE = Path(__file__).resolve().parent
ROUTE = "/v1/chat/completions"
ROUTES = {ROUTE: ROUTE}
SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "POST",
    "path": ROUTE,
    "scheme": "http",
    "http_version": "1.1",
    "headers": [(b"host", b"gw"), (b"content-type", b"application/json"), (b"authorization", b"Bearer sk-x")],
    "state": {},
}
REQUEST_BODY = {"model": "fast", "messages": [{"role": "user", "content": "Say hello in one word."}], "max_tokens": 16}
ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
}


def make_record(index: int) -> RequestRecord:
    """What the pipeline hands over for one answered request: one attempt, tokens, bodies."""
    stream = index % 2 == 1
    record = RequestRecord.begin(
        f"req-{index:08x}", ROUTE, "fast", stream=stream, user_id="user-1", key_id="key-1", request_body=REQUEST_BODY
    )
    attempt = AttemptRecord.begin("openai", "gpt-4o-mini")
    attempt.end(status=200)
    record.attempts = [attempt]
    record.provider, record.upstream_model = "openai", "gpt-4o-mini"
    record.response_model, record.response_body, record.finish_reasons = ANSWER["model"], ANSWER, ("stop",)
    record.prompt_tokens, record.completion_tokens = 12, 2
    if stream:
        record.first_byte()
    return record


def stub_app(telemetry: Telemetry | None) -> Callable[..., Any]:
    counter = iter(range(1 << 62))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if telemetry is not None:
            telemetry.record(make_record(next(counter)))
        else:
            make_record(next(counter))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build(config: str, sink: str) -> Telemetry | None:
    if config == "a":
        return None
    env: dict[str, str] = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink} if config in ("c", "d", "e") else {}
    helicone = {"helicone_api_key": "bench", "helicone_base_url": sink} if config in ("d", "e", "h") else {}
    return Telemetry.create(TelemetrySettings(**helicone), env)  # type: ignore[arg-type]


async def drive(config: str, sink: str, requests: int) -> tuple[float, float]:
    logging.getLogger().setLevel(logging.INFO if config == "e" else logging.WARNING)
    telemetry = build(config, sink)
    inner = stub_app(telemetry)
    app = telemetry.wrap(inner, routes=ROUTES) if telemetry is not None else inner
    if telemetry is not None:
        await telemetry.start()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def run(count: int) -> None:
        for index in range(count):
            await app(dict(SCOPE), receive, send)
            if index % 64 == 63:
                await asyncio.sleep(0)  # let the Helicone worker run, as it would between requests

    await run(min(2000, requests))  # warm-up: caches, first export connections
    if telemetry is not None and telemetry.otel is not None:
        await asyncio.to_thread(telemetry.otel.force_flush)
    await _drained(telemetry)
    gc.collect()
    loop0, process0 = time.thread_time(), time.process_time()
    await run(requests)
    loop_cpu = time.thread_time() - loop0
    if telemetry is not None and telemetry.otel is not None:
        await asyncio.to_thread(telemetry.otel.force_flush)
    await _drained(telemetry)
    process_cpu = time.process_time() - process0
    if telemetry is not None:
        await telemetry.aclose()
    return loop_cpu / requests * 1e6, process_cpu / requests * 1e6


async def _drained(telemetry: Telemetry | None) -> None:
    helicone = telemetry.helicone if telemetry is not None else None
    while helicone is not None and (helicone.depth or helicone._wakeup.is_set()):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the last batch's sends


LABELS = {
    "a": "no telemetry (floor)",
    "b": "Prometheus only (observability off)",
    "c": "+ OTel traces and metrics, OTLP/HTTP",
    "d": "+ Helicone",
    "e": "+ INFO JSON request line",
    "h": "Prometheus + Helicone (no OTel)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--only", default="a,b,c,d,e")
    parser.add_argument("--rounds", type=int, default=3, help="each configuration's best round is reported")
    args = parser.parse_args()
    setup_logging("WARNING", "json", stream=open(os.devnull, "w"))
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(HERE / "sink.py"), "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().startswith("READY")
        print(f"{'config':<42} {'loop us':>8} {'process us':>11}")
        for config in args.only.split(","):
            rounds = [asyncio.run(drive(config, f"http://127.0.0.1:{port}", args.requests)) for _ in range(args.rounds)]
            loop_us, process_us = min(loop for loop, _ in rounds), min(process for _, process in rounds)
            print(f"{config}) {LABELS[config]:<39} {loop_us:>8.1f} {process_us:>11.1f}", flush=True)
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()

"""A fast fake OpenAI-compatible upstream for load benchmarks.

Why this exists: a gateway benchmark measures the gateway only if the thing behind it is
never the bottleneck. Test fakes built on a web framework top out at a few thousand
requests per second per core, which is below what the gateway itself should reach, so the
benchmark would measure the fake. This server uses bare asyncio Protocols, the httptools C
parser and uvloop, pre-serialises every response byte at start-up and does no per-request
JSON work: it sustains tens of thousands of keep-alive requests per second on one core.

Endpoints (127.0.0.1 only):
  POST /v1/chat/completions  a fixed chat.completion with usage, after --delay-ms; when the
                             body has ``"stream": true`` an SSE stream of --stream-events
                             chunks --event-gap-ms apart, a usage chunk and ``data: [DONE]``
                             (chunked transfer encoding, one flush per event). With --paced, event k
                             leaves at (request's arrival + k x gap) on the loop's clock, whatever
                             the previous one cost: a drift-free schedule that a client can measure
                             each event's lateness against (bench/stream_swarm.py), and one timer
                             callback per event instead of a task's sleep, so that thousands of
                             concurrent streams stay cheap on the client core.
  POST /v1/embeddings        OpenAI's embeddings ``list``: one 1,536-float vector per input (or
                             ``dimensions`` floats), as JSON floats or, with ``"encoding_format":
                             "base64"``, base64 float32; after --delay-ms. The answer for each
                             (input count, dimensions, format) is built once, on first sight, and
                             cached: per request only the small JSON body is parsed.
  GET  /health               200 ``{"status":"ok"}``.

Prints ``READY <port>`` on stdout once listening (``--port 0`` picks a free port) and exits
cleanly on SIGTERM/SIGINT.

    python bench/upstream.py --port 8001 [--delay-ms 0] [--stream-events 16] [--event-gap-ms 0] [--paced]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import random
import re
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import cast

import httptools
import uvloop

HOST = "127.0.0.1"
MAX_BODY_BYTES = 4 * 1024 * 1024
STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
MODEL = "gpt-4o-mini-2024-07-18"
ANSWER = "Hello! This is a fixed answer from the benchmark upstream. How can I help you today?"
PROMPT_TOKENS = 19
EMBEDDING_MODEL = "text-embedding-3-small"
EMBEDDING_DIMENSIONS = 1536
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_DIMENSIONS = 3072
EMBEDDING_TOKENS_PER_INPUT = 8
EMBEDDING_CACHE_SIZE = 64  # distinct (count, dimensions, format) answers kept; the bench sends one


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(status: str, content_type: str, body: bytes, *, close: bool = False) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
    if close:
        head += "connection: close\r\n"
    return head.encode() + b"\r\n" + body


def _chunk(data: bytes) -> bytes:
    """One chunk of chunked transfer encoding."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _error(status: str, message: str, code: str, *, close: bool = False) -> bytes:
    """A whole HTTP answer carrying OpenAI's error envelope."""
    body = _dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    return _response(status, "application/json", body, close=close)


def _usage(completion_tokens: int) -> dict[str, object]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _completion_body(created: int) -> bytes:
    return _dumps(
        {
            "id": "chatcmpl-bench0000000000000000000000001",
            "object": "chat.completion",
            "created": created,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(len(ANSWER.split())),
            "service_tier": "default",
            "system_fingerprint": "fp_bench0001",
        }
    )


def _stream_events(created: int, n_events: int) -> list[bytes]:
    """SSE events (``data: ...\\n\\n``): n content chunks, then the usage chunk and [DONE]."""
    words = ANSWER.split()
    base = {
        "id": "chatcmpl-bench0000000000000000000000002",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_bench0001",
    }
    events = []
    for i in range(n_events):
        delta: dict[str, object] = {"content": ("" if i == 0 else " ") + words[i % len(words)]}
        if i == 0:
            delta = {"role": "assistant", "refusal": None, **delta}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": "stop" if i == n_events - 1 else None}
        events.append(_dumps({**base, "choices": [choice], "usage": None}))
    events.append(_dumps({**base, "choices": [], "usage": _usage(n_events)}))
    return [b"data: " + e + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def _vector(index: int, dimensions: int) -> list[float]:
    """The fixed vector of input ``index``: float32 values in [-1, 1), as the real API sends."""
    rng = random.Random(index * 100_003 + dimensions)
    packed = struct.pack(f"<{dimensions}f", *(rng.random() * 2 - 1 for _ in range(dimensions)))
    return list(struct.unpack(f"<{dimensions}f", packed))


def _embedding_body(count: int, dimensions: int, as_base64: bool) -> bytes:
    """The whole embeddings answer for ``count`` inputs; floats printed with 9 significant digits (float32
    round-trips, and the size is the real API's: ~13 bytes a float)."""
    items = []
    for index in range(count):
        vector = _vector(index, dimensions)
        if as_base64:
            embedding = '"' + base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() + '"'
        else:
            embedding = "[" + ",".join(f"{v:.9g}" for v in vector) + "]"
        items.append(f'{{"object":"embedding","index":{index},"embedding":{embedding}}}')
    tokens = count * EMBEDDING_TOKENS_PER_INPUT
    usage = _dumps({"prompt_tokens": tokens, "total_tokens": tokens}).decode()
    return f'{{"object":"list","data":[{",".join(items)}],"model":"{EMBEDDING_MODEL}","usage":{usage}}}'.encode()


def _embedding_key(body: bytes | bytearray) -> tuple[int, int, bool] | None:
    """(input count, dimensions, base64) of an embeddings request, or None when the body is not one."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    raw = request.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)):
        count = 1
    elif isinstance(raw, list):
        count = len(raw)
    else:
        return None
    dimensions = request.get("dimensions") or EMBEDDING_DIMENSIONS
    encoding = request.get("encoding_format", "float")
    if not 0 < count <= MAX_EMBEDDING_INPUTS or encoding not in ("float", "base64"):
        return None
    if not isinstance(dimensions, int) or not 0 < dimensions <= MAX_EMBEDDING_DIMENSIONS:
        return None
    return count, dimensions, encoding == "base64"


@dataclass(slots=True)
class EmbeddingAnswers:
    """Whole HTTP answers to embeddings requests, built on first sight of each (count, dimensions, format)."""

    cache: dict[tuple[int, int, bool], bytes] = field(default_factory=dict)

    def answer(self, body: bytes | bytearray, keep_alive: bool) -> bytes:
        key = _embedding_key(body)
        if key is None:
            return _error("400 Bad Request", "'$.input' is invalid.", "invalid_value", close=not keep_alive)
        found = self.cache.get(key)
        if found is None:
            if len(self.cache) >= EMBEDDING_CACHE_SIZE:
                self.cache.clear()
            found = self.cache[key] = _response("200 OK", "application/json", _embedding_body(*key))
        if keep_alive:
            return found
        return found.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)


@dataclass(frozen=True, slots=True)
class Answers:
    """Every byte the server ever sends, built once at start-up."""

    completion: bytes
    completion_close: bytes
    health: bytes
    health_close: bytes
    not_found: bytes
    not_allowed: bytes
    bad_request: bytes
    too_large: bytes
    stream_head: bytes
    stream_head_close: bytes
    stream_first: bytes  # first event (sent with the head)
    stream_middle: tuple[bytes, ...]  # the other content events, one chunk each
    stream_tail: bytes  # usage event + [DONE] + terminating zero-length chunk
    stream_all: bytes  # every chunk joined, for --event-gap-ms 0

    @classmethod
    def build(cls, n_events: int) -> Answers:
        created = int(time.time())
        completion = _completion_body(created)
        health = b'{"status":"ok"}'
        events = [_chunk(e) for e in _stream_events(created, n_events)]
        content, usage_done = events[:n_events], events[n_events:]
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
        head += "transfer-encoding: chunked\r\n"
        tail = b"".join(usage_done) + b"0\r\n\r\n"
        return cls(
            completion=_response("200 OK", "application/json", completion),
            completion_close=_response("200 OK", "application/json", completion, close=True),
            health=_response("200 OK", "application/json", health),
            health_close=_response("200 OK", "application/json", health, close=True),
            not_found=_error("404 Not Found", "Not found", "not_found"),
            not_allowed=_error("405 Method Not Allowed", "Method not allowed", "method_not_allowed"),
            bad_request=_error("400 Bad Request", "Malformed HTTP request", "bad_request", close=True),
            too_large=_error("413 Payload Too Large", "Body too large", "too_large", close=True),
            stream_head=(head + "\r\n").encode(),
            stream_head_close=(head + "connection: close\r\n\r\n").encode(),
            stream_first=content[0],
            stream_middle=tuple(content[1:]),
            stream_tail=tail,
            stream_all=b"".join(content) + tail,
        )


@dataclass(slots=True)
class Config:
    delay: float
    event_gap: float
    answers: Answers
    paced: bool = False
    embeddings: EmbeddingAnswers = field(default_factory=EmbeddingAnswers)
    connections: set[HttpConnection] = field(default_factory=set)


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection. Answers are written in request order: while a
    delayed or streamed answer is in flight, reading pauses and later requests wait."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = bytearray()
        self.too_large = False
        self.busy = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.pending: collections.deque[tuple[bytes, bytes, bool, bool, bytearray]] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass
        self.config.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write_and_close(self.config.answers.bad_request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.config.connections.discard(self)
        self.transport = None
        if self.task is not None:
            self.task.cancel()
        if self.timer is not None:
            self.timer.cancel()
        self._wake_drain()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()
        self._wake_drain()

    # --- httptools callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = bytearray()
        self.too_large = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if len(self.body) + len(body) > MAX_BODY_BYTES:
            self.too_large = True
        else:
            self.body += body

    def on_message_complete(self) -> None:
        is_stream = b'"stream"' in self.body and STREAM_RE.search(self.body) is not None
        request = (self.parser.get_method(), self.url, self.parser.should_keep_alive(), is_stream, self.body)
        if self.busy:
            self.pending.append(request)
        else:
            self._dispatch(*request)

    # --- answering --------------------------------------------------------------------
    def _dispatch(self, method: bytes, url: bytes, keep_alive: bool, is_stream: bool, body: bytearray) -> None:
        answers = self.config.answers
        path = url.split(b"?", 1)[0]
        if self.too_large:
            self._write_and_close(answers.too_large)
        elif path == b"/v1/chat/completions":
            if method != b"POST":
                self._finish(answers.not_allowed, keep_alive)
            elif is_stream and self.config.paced and self.config.event_gap > 0 and self.config.delay <= 0:
                self._start_busy()
                self._paced(0, asyncio.get_running_loop().time(), keep_alive)
            elif is_stream:
                self._start_busy()
                self.task = asyncio.get_running_loop().create_task(self._stream(keep_alive))
            else:
                self._answer(answers.completion if keep_alive else answers.completion_close, keep_alive)
        elif path == b"/v1/embeddings":
            if method != b"POST":
                self._finish(answers.not_allowed, keep_alive)
            else:
                self._answer(self.config.embeddings.answer(body, keep_alive), keep_alive)
        elif path == b"/health":
            self._finish(answers.health if keep_alive else answers.health_close, keep_alive)
        else:
            self._finish(answers.not_found, keep_alive)

    def _answer(self, data: bytes, keep_alive: bool) -> None:
        """A whole answer, now or after --delay-ms."""
        if self.config.delay > 0:
            self._start_busy()
            self.timer = asyncio.get_running_loop().call_later(self.config.delay, self._finish, data, keep_alive)
        else:
            self._finish(data, keep_alive)

    async def _stream(self, keep_alive: bool) -> None:
        config = self.config
        answers = config.answers
        if config.delay > 0:
            await asyncio.sleep(config.delay)
        head = answers.stream_head if keep_alive else answers.stream_head_close
        if config.event_gap <= 0:
            self._finish(head + answers.stream_all, keep_alive)
            return
        self._write(head + answers.stream_first)
        for event in answers.stream_middle:
            await asyncio.sleep(config.event_gap)
            await self._drain()
            if self.transport is None:
                return
            self._write(event)
        self._finish(answers.stream_tail, keep_alive)

    def _paced(self, index: int, start: float, keep_alive: bool) -> None:
        """Event ``index`` of a --paced stream (0: the head and first event), then the timer for the next one at
        ``start + (index + 1) x gap``: an absolute schedule, so a late callback does not delay the ones after it."""
        answers = self.config.answers
        if self.transport is None:
            return
        if index == 0:
            self._write((answers.stream_head if keep_alive else answers.stream_head_close) + answers.stream_first)
        elif index <= len(answers.stream_middle):
            self._write(answers.stream_middle[index - 1])
        if index == len(answers.stream_middle):
            self._finish(answers.stream_tail, keep_alive)
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(
            start + (index + 1) * self.config.event_gap, self._paced, index + 1, start, keep_alive
        )

    def _finish(self, data: bytes, keep_alive: bool) -> None:
        """Write the last bytes of an answer, then close or serve the next queued request."""
        self.task = None
        self.timer = None
        if not keep_alive:
            self._write_and_close(data)
            return
        self._write(data)
        if self.busy:
            self.busy = False
            while self.pending and not self.busy and self.transport is not None:
                self._dispatch(*self.pending.popleft())
            self._update_reading()

    def _start_busy(self) -> None:
        self.busy = True
        self._update_reading()

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _write_and_close(self, data: bytes) -> None:
        self.pending.clear()
        if self.transport is not None:
            self.transport.write(data)
            self.transport.close()
            self.transport = None

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.busy or self.write_paused:
            if transport.is_reading():
                transport.pause_reading()
        elif not transport.is_reading():
            transport.resume_reading()

    async def _drain(self) -> None:
        if self.write_paused and self.transport is not None:
            self.drain_waiter = asyncio.get_running_loop().create_future()
            await self.drain_waiter

    def _wake_drain(self) -> None:
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def serve(port: int, delay_ms: float, stream_events: int, event_gap_ms: float, paced: bool = False) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers.build(stream_events)
    config = Config(delay=delay_ms / 1000, event_gap=event_gap_ms / 1000, answers=answers, paced=paced)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(lambda: HttpConnection(config), HOST, port, backlog=4096, reuse_address=True)
    actual_port = server.sockets[0].getsockname()[1]
    print(f"READY {actual_port}", flush=True)
    await stop.wait()
    server.close()
    for conn in list(config.connections):
        conn.abort()
    try:
        await asyncio.wait_for(server.wait_closed(), timeout=5)
    except TimeoutError:
        print("upstream: timed out waiting for connections to close", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8001, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before each answer (time to first byte)")
    parser.add_argument("--stream-events", type=int, default=16, help="content chunks per streamed answer (>= 1)")
    parser.add_argument("--event-gap-ms", type=float, default=0.0, help="gap between streamed chunks")
    parser.add_argument(
        "--paced", action="store_true", help="stream events on an absolute schedule (arrival + k x gap; no --delay-ms)"
    )
    args = parser.parse_args(argv)
    if args.stream_events < 1:
        parser.error("--stream-events must be >= 1")
    if args.delay_ms < 0 or args.event_gap_ms < 0:
        parser.error("--delay-ms and --event-gap-ms must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    uvloop.run(serve(args.port, args.delay_ms, args.stream_events, args.event_gap_ms, args.paced))
    return 0


if __name__ == "__main__":
    sys.exit(main())

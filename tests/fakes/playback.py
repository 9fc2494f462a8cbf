"""Turns one behaviour into bytes on the socket: JSON answers, SSE streams, stalls and abrupt drops.

Drops use the transport's ``abort()``: the peer sees a reset with no response (``Drop``) or a body cut
short (``FailMidStream``), never a clean end of stream.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from .behaviours import Behaviour, Delay, Drop, EchoHeaders, Fail, FailMidStream, Flood, Raw, Reply, Stall, StreamError
from .sse import StreamPlan, dumps

JSON = dict[str, Any]


class ProviderWire(Protocol):
    """What a provider's wire module offers the fake server (``openai_wire``, ``anthropic_wire``).

    A wire may also define these, which the fake uses when present (the cloud providers' wires need them):
    ``chat_routes`` (aiohttp path patterns served as chat, e.g. ``/model/{model}/converse``; default
    ``(chat_path,)``) with ``is_chat(path)``; ``request_view(method, path, query, body)`` (the body the wire judges and
    answers: e.g. the model and ``stream`` read from the URL; the recorded body stays as sent); ``authenticate(method,
    path_qs, headers, raw)`` (instead of ``check_auth``: for a signature over the whole request; ``path_qs`` as
    sent, percent-encoded);
    ``stream_content_type``; and ``error_headers(status, body)`` (headers every error answer carries).
    """

    kind: str
    chat_path: str
    models_path: str
    request_id_header: str
    stream_error_status: int

    def error(
        self, status: int, message: str | None = None, error_type: str | None = None, code: str | None = None
    ) -> JSON: ...
    def stream_error(self, message: str | None, error_type: str | None) -> bytes: ...
    def not_found(self, method: str, path: str) -> tuple[int, JSON]: ...
    def check_auth(self, headers: Mapping[str, str]) -> tuple[int, JSON] | None: ...
    def check_request(self, body: Any, headers: Mapping[str, str]) -> tuple[int, JSON] | None: ...
    def models(self) -> JSON: ...
    def completion(self, request: JSON, reply: Reply) -> JSON: ...
    def stream(self, request: JSON, reply: Reply) -> StreamPlan: ...


def json_answer(wire: ProviderWire, status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response with the provider's request-id header, like every real answer carries."""
    error_headers = getattr(wire, "error_headers", None)
    extra = error_headers(status, body) if status >= 400 and error_headers is not None else {}
    all_headers = {wire.request_id_header: f"req_{uuid.uuid4().hex[:24]}", **extra, **(headers or {})}
    return web.Response(status=status, text=dumps(body), content_type="application/json", headers=all_headers)


async def play(
    behaviour: Behaviour,
    request: web.Request,
    wire: ProviderWire,
    body: JSON,
    *,
    answer: Callable[[Reply], JSON] | None = None,
) -> web.StreamResponse:
    """Answer ``request`` (already authenticated and validated) as ``behaviour`` says.

    ``answer`` replaces the chat completion for another endpoint that never streams (embeddings): its
    ``Reply`` body, and the body that ``FailMidStream``/``Stall`` cut; ``StreamError`` is then a plain error.
    """
    streaming = answer is None and body.get("stream") is True
    completion = answer or (lambda reply: wire.completion(body, reply))
    match behaviour:
        case Reply():
            if streaming:
                return await _stream(request, wire, wire.stream(body, behaviour), behaviour.chunk_delay)
            return json_answer(wire, 200, completion(behaviour))
        case Fail(status, message, error_type=error_type, code=code, headers=headers):
            return json_answer(wire, status, wire.error(status, message, error_type, code), headers)
        case Delay(seconds, then):
            await asyncio.sleep(seconds)
            return await play(then, request, wire, body, answer=answer)
        case Drop():
            return _abort(request, web.StreamResponse())
        case Raw(status, raw_body, content_type):
            return web.Response(status=status, body=raw_body, headers={"Content-Type": content_type})
        case FailMidStream(after, reply=reply):
            if streaming:
                return await _stream(request, wire, wire.stream(body, reply), reply.chunk_delay, cut_after=after)
            return await _partial_json(request, wire, completion(reply), pause=None)
        case Stall(after, seconds, reply=reply):
            if streaming:
                plan = wire.stream(body, reply)
                return await _stream(request, wire, plan, reply.chunk_delay, stall=(after, seconds))
            return await _partial_json(request, wire, completion(reply), pause=seconds)
        case StreamError(after, message=message, error_type=error_type, reply=reply):
            if not streaming:
                status = wire.stream_error_status
                return json_answer(wire, status, wire.error(status, message, error_type))
            planned = wire.stream(body, reply)
            error_event = planned.failure_after(after, message, error_type) or wire.stream_error(message, error_type)
            return await _stream(request, wire, planned, reply.chunk_delay, error=(after, error_event))
        case Flood() | EchoHeaders():
            return await _play_hostile(behaviour, request, wire, body, streaming=streaming)
    raise TypeError(f"not a behaviour: {behaviour!r}")


async def _play_hostile(
    behaviour: Flood | EchoHeaders, request: web.Request, wire: ProviderWire, body: JSON, *, streaming: bool
) -> web.StreamResponse:
    """The behaviours that test the gateway's bounds and secrecy rather than the provider's wire."""
    if isinstance(behaviour, Flood):
        return await _flood(
            request, wire, behaviour.size, behaviour.prefix, behaviour.content_type, announce=behaviour.announce
        )
    seen = "; ".join(f"{name}: {value}" for name, value in request.headers.items())
    message = f"request refused; headers received: {seen}"
    if behaviour.in_stream and streaming:
        return await play(StreamError(2, message=message, reply=Reply("a b c d", chunks=4)), request, wire, body)
    return json_answer(wire, behaviour.status, wire.error(behaviour.status, message))


async def _flood(
    request: web.Request, wire: ProviderWire, size: int, prefix: bytes, content_type: str, *, announce: bool
) -> web.StreamResponse:
    response = await _open(request, wire, content_type, size if announce else None)
    piece = b"x" * 65536
    try:
        await response.write(prefix)
        for _ in range((size - len(prefix)) // len(piece)):
            await response.write(piece)
        await response.write(b"x" * ((size - len(prefix)) % len(piece)))
        await response.write_eof()
    except (ConnectionError, RuntimeError):  # the client closed: what this behaviour is for
        pass
    return response


def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Reset the connection; aiohttp then has nothing left to write the returned response to."""
    if request.transport is not None:
        request.transport.abort()
    return response


async def _open(
    request: web.Request, wire: ProviderWire, content_type: str, content_length: int | None = None
) -> web.StreamResponse:
    response = web.StreamResponse(status=200)
    response.content_length = content_length
    response.headers["Content-Type"] = content_type
    response.headers[wire.request_id_header] = f"req_{uuid.uuid4().hex[:24]}"
    if content_type.startswith("text/event-stream"):
        response.headers["Cache-Control"] = "no-cache"
    await response.prepare(request)
    return response


async def _write(response: web.StreamResponse, events: list[bytes]) -> None:
    for event in events:
        await response.write(event)


async def _stream(
    request: web.Request,
    wire: ProviderWire,
    plan: StreamPlan,
    chunk_delay: float,
    *,
    cut_after: int | None = None,
    stall: tuple[int, float] | None = None,
    error: tuple[int, bytes] | None = None,
) -> web.StreamResponse:
    """Send ``plan``; at most one of ``cut_after`` / ``stall`` / ``error`` changes how it ends."""
    response = await _open(request, wire, getattr(wire, "stream_content_type", "text/event-stream; charset=utf-8"))
    await _write(response, plan.head)
    for sent, chunk in enumerate(plan.chunks):
        if sent == cut_after:
            return _abort(request, response)
        if error is not None and sent == error[0]:
            break
        if stall is not None and sent == stall[0]:
            await asyncio.sleep(stall[1])
        if chunk_delay:
            await asyncio.sleep(chunk_delay)
        await _write(response, chunk)
    if cut_after is not None:
        return _abort(request, response)
    if error is not None:
        await response.write(error[1])
    else:
        if stall is not None and stall[0] >= len(plan.chunks):
            await asyncio.sleep(stall[1])
        await _write(response, plan.tail)
    await response.write_eof()
    return response


async def _partial_json(
    request: web.Request, wire: ProviderWire, body: JSON, *, pause: float | None
) -> web.StreamResponse:
    """Headers and half the body; then either abort (``pause=None``) or wait ``pause`` and finish."""
    raw = dumps(body).encode()
    response = await _open(request, wire, "application/json", len(raw))
    await response.write(raw[: len(raw) // 2])
    if pause is None:
        return _abort(request, response)
    await asyncio.sleep(pause)
    await response.write(raw[len(raw) // 2 :])
    await response.write_eof()
    return response

"""What every HTTP adapter shares: post JSON and read a bounded answer, open an event stream, relay it.

An adapter (``openai_compat.py``, ``anthropic/client.py``) subclasses ``HttpAdapter`` for its request
heads and error bodies and ``EventStream`` (SSE; ``UpstreamStream`` for another framing, as Bedrock's) for its
``translate(event)``; everything else lives here
once: the transport (``llm_gateway.http``), ``map_transport_errors`` (the transport's exceptions ->
the gateway's ``UpstreamError`` tree), the upstream's ``Retry-After``, and secret masking (the key and
every configured header value become ``***`` in any message relayed to the caller or logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

import orjson

from llm_gateway.errors import (
    ProviderProtocolError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnreachable,
    UpstreamError,
    UpstreamStreamError,
)
from llm_gateway.http import (
    BodyCut,
    ConnectError,
    HttpTransport,
    ReadError,
    RemoteProtocolError,
    ResponseTooLarge,
    SSEDecoder,
    SSEEvent,
    TimeoutException,
    UpstreamBounds,
    UpstreamResponse,
)
from llm_gateway.schemas.core import Usage
from llm_gateway.settings import ProviderConfig

# Enough for any error body worth reading; a bigger one is cut rather than buffered whole.
MAX_ERROR_BODY_BYTES = 64 * 1024


@contextlib.contextmanager
def map_transport_errors(provider: str, *, stream: bool = False) -> Iterator[None]:
    """The transport's exceptions -> the gateway's tree, without the lower message (``from None``).

    Inside a started stream (``stream=True``) an oversized or undecodable body is the stream's failure
    (``UpstreamStreamError``: the caller gets the stream's error event)."""
    try:
        yield
    except UpstreamError:
        raise
    except TimeoutException:
        raise ProviderTimeout(f"{provider} did not answer in time", provider=provider) from None
    except ConnectError:
        raise ProviderUnreachable(f"{provider} could not be reached", provider=provider) from None
    except BodyCut:
        raise ProviderUnreachable(f"{provider} closed the connection mid-answer", provider=provider) from None
    except ReadError:
        raise ProviderUnreachable(f"{provider} closed the connection before answering", provider=provider) from None
    except ResponseTooLarge:
        kind = UpstreamStreamError if stream else ProviderProtocolError
        raise kind(f"{provider} sent too large an answer", provider=provider) from None
    except RemoteProtocolError:
        kind = UpstreamStreamError if stream else ProviderProtocolError
        raise kind(f"{provider} sent an invalid HTTP response", provider=provider) from None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` (OpenAI, Azure), else ``retry-after`` in seconds or as an HTTP date; None if absent."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        with contextlib.suppress(ValueError):
            value = float(milliseconds)
            if math.isfinite(value) and value >= 0:
                return value / 1000
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def passthrough_body(body: dict[str, Any], model: str, *, stream: bool) -> bytes:
    """The caller's body for a native passthrough: ``model`` replaced (in place: the key order is the caller's)
    and ``stream`` set only when it must change."""
    request = {**body, "model": model}
    if stream:
        request["stream"] = True
    elif body.get("stream"):
        request["stream"] = False
    return orjson.dumps(request)


def sse_frame(name: str, data: bytes) -> bytes:
    """One relayed event, ``event: NAME\\ndata: DATA\\n\\n``; a multi-line data field keeps a ``data:`` per
    line (the SSE spec's join, undone)."""
    if b"\n" in data:
        data = data.replace(b"\n", b"\ndata: ")
    return b"event: %s\ndata: %s\n\n" % (name.encode(), data)


class SecretMask:
    """Every secret a provider is configured with (its key, its header values), replaced by ``***``."""

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[str]) -> None:
        self._values = sorted({value for value in values if value}, key=len, reverse=True)  # longest first

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, "***")
        return text


class ErrorFields(NamedTuple):
    """What an adapter reads from its upstream's error body (and headers: ``error_fields`` may read both).

    ``retryable`` overrides the status's verdict (``errors.is_retryable_status``) where the body says more: an
    invalid key sent as a 400 is the gateway's credentials failing (fall back), not the caller's request."""

    message: str | None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retryable: bool | None = None


class HttpAdapter:
    """One provider's transport, request heads and error handling; subclasses say how errors read."""

    # What a stream answer must be labelled (Bedrock's is AWS's event-stream framing).
    stream_content_type: ClassVar[str] = "text/event-stream"

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        bounds: UpstreamBounds,
        *,
        path: str,
        headers: dict[str, str],
        secret: str,
    ) -> None:
        """``headers``: the adapter's own (auth, content type, version); the configured ones are added after."""
        self.name = name
        self.bounds = bounds
        self.mask = SecretMask([secret, *config.headers.values()])
        self._transport = HttpTransport(config.base_url, bounds=bounds)
        self._fixed = {**headers, "Accept": "application/json", **config.headers}
        self._head = self.request_head(path)
        self._stream_head = self.request_head(path, stream=True)

    @property
    def transport(self) -> HttpTransport:
        return self._transport

    def request_head(self, path: str, extra: Mapping[str, str] | None = None, *, stream: bool = False) -> bytes:
        """The head of ``POST {path}`` with the adapter's headers; ``extra`` replaces any header of the same
        name (case-insensitively). Build it once and keep it: a head is not built per request."""
        headers = self._fixed
        if extra:
            names = {name.lower() for name in extra}
            headers = {name: value for name, value in headers.items() if name.lower() not in names} | dict(extra)
        if stream:
            headers = {**headers, "Accept": "text/event-stream"}
        return self._transport.request_head(path, headers)

    async def aclose(self) -> None:
        await self._transport.aclose()

    def error_fields(self, parsed: Any, headers: Mapping[str, str]) -> ErrorFields:
        """The upstream's error body (parsed JSON, or None) and headers -> message, type, code, param."""
        raise NotImplementedError

    def dropped_params(self, body: dict[str, Any], model: str) -> tuple[str, ...]:
        """A passthrough honours every parameter (the upstream itself judges them)."""
        return ()

    async def post_json(
        self, payload: bytes, *, timeout: float, head: bytes | None = None
    ) -> tuple[dict[str, Any], bytes, int]:
        """POST (to the adapter's path, or with ``head``); the answer parsed as a JSON object, its bytes
        (bounded by ``max_response_bytes``), its status."""
        with map_transport_errors(self.name):
            async with self._transport.post(head or self._head, payload, timeout=timeout) as response:
                if response.status >= 400:
                    raise await self._rejection(response)
                raw = await response.read()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProviderProtocolError(
                f"{self.name} answered with invalid JSON", provider=self.name, upstream_status=response.status
            ) from None
        if not isinstance(parsed, dict):
            raise ProviderProtocolError(
                f"{self.name} answered without a JSON object", provider=self.name, upstream_status=response.status
            )
        return parsed, raw, response.status

    async def open_stream(self, payload: bytes, *, timeout: float, head: bytes | None = None) -> UpstreamResponse:
        """POST for a stream (to the adapter's path, or with ``head``): the response once the upstream
        accepted (status and content type checked).

        The caller owns the response from here (its stream releases it); on any failure here it is released."""
        exchange = self._transport.post(head or self._stream_head, payload, timeout=timeout)
        with map_transport_errors(self.name):
            response = await exchange.__aenter__()
            try:
                if response.status >= 400:
                    raise await self._rejection(response)
                if response.content_type != self.stream_content_type:
                    raise ProviderProtocolError(
                        f"{self.name} answered a stream request with {response.content_type or 'no content type'}",
                        provider=self.name,
                        upstream_status=response.status,
                    )
            except BaseException:
                response.release()
                raise
        return response

    async def _rejection(self, response: UpstreamResponse) -> ProviderRejected:
        raw = await response.read_prefix(MAX_ERROR_BODY_BYTES)
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        fields = self.error_fields(parsed, response.headers)
        rejected = ProviderRejected(
            self.mask(fields.message or f"{self.name} returned HTTP {response.status}"),
            provider=self.name,
            upstream_status=response.status,
            error_type=fields.type,
            error_code=fields.code,
            param=fields.param,
            retry_after_seconds=retry_after_seconds(response.headers),
        )
        if fields.retryable is not None:
            rejected.retryable = fields.retryable
        return rejected


EventT = TypeVar("EventT")
EventT_co = TypeVar("EventT_co", covariant=True)


class Decoder(Protocol[EventT_co]):
    """A stream's framing: bytes in (``feed``, as each read arrives; ``end`` when the body ended), whole events
    out. A bound passed raises ``ResponseTooLarge``; ``feed`` may hold that back (``raise_refused``) until the
    events completed before it went on."""

    def feed(self, chunk: bytes) -> Iterable[EventT_co]: ...

    def raise_refused(self) -> None: ...

    def end(self) -> Iterable[EventT_co]: ...


class UpstreamStream(Generic[EventT]):
    """A ``ChunkStream`` over an upstream's events, however framed: subclasses say how the body reads as events
    (``decoder``) and ``translate`` each one to chunk payloads.

    ``translate`` sets ``finished`` when the upstream said the answer is whole (the rest is not read);
    a body that ends before that calls ``ended()``, which refuses by default. Every event is checked against
    the stream's ``deadline``; a translation error is masked of the adapter's secrets."""

    def __init__(self, adapter: HttpAdapter, response: UpstreamResponse, deadline: float) -> None:
        self._provider = adapter.name
        self._mask = adapter.mask
        self._max_line = adapter.bounds.max_sse_line_bytes
        self._response = response
        self._deadline = deadline
        self._usage: Usage | None = None
        self.finished = False
        self._iterator = self._chunks()
        self._last: tuple[bytes, dict[str, Any]] | None = None  # the payload yielded last, and its JSON

    def parsed(self, item: bytes) -> dict[str, Any] | None:
        last = self._last
        return last[1] if last is not None and last[0] is item else None

    def keep_parsed(self, payload: bytes, parsed: dict[str, Any]) -> None:
        """``payload`` (about to be yielded) is ``parsed``: for ``parsed()``, so its readers need not parse it."""
        self._last = (payload, parsed)

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterator

    def decoder(self) -> Decoder[EventT]:
        """What turns the body's bytes into events, as they arrive."""
        raise NotImplementedError

    def translate(self, event: EventT) -> Iterable[bytes]:
        raise NotImplementedError

    def ended(self) -> None:
        """The body ended before ``finished``: the answer may be cut."""
        raise UpstreamStreamError(
            f"{self._provider} ended the stream before the answer was complete", provider=self._provider
        )

    def invalid(self) -> UpstreamStreamError:
        return UpstreamStreamError(f"{self._provider} sent an invalid stream event", provider=self._provider)

    def parse(self, data: bytes) -> dict[str, Any]:
        """An event's data as a JSON object; anything else is an invalid event."""
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self.invalid() from None
        if not isinstance(parsed, dict):
            raise self.invalid()
        return parsed

    async def aclose(self) -> None:
        try:
            await self._iterator.aclose()
        finally:
            self._response.release()

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        """One generator from the socket's reads to the payloads: the reads are awaited and the events decoded
        by plain calls (a generator per layer cost more than the parsing)."""
        provider, loop, response = self._provider, asyncio.get_running_loop(), self._response
        decoder = self.decoder()
        with map_transport_errors(provider, stream=True):
            while (chunk := await response.next_chunk()) is not None:
                for event in decoder.feed(chunk):
                    for payload in self._payloads(event, loop.time()):
                        yield payload
                    if self.finished:
                        return
                decoder.raise_refused()
            for event in decoder.end():
                for payload in self._payloads(event, loop.time()):
                    yield payload
                if self.finished:
                    return
        self.ended()

    def _payloads(self, event: EventT, now: float) -> Iterable[bytes]:
        """``translate(event)``, past the deadline a timeout, and a secret in its message masked."""
        if now > self._deadline:
            raise ProviderTimeout(f"{self._provider} stream exceeded the request timeout", provider=self._provider)
        try:
            return self.translate(event)
        except UpstreamStreamError as exc:
            masked = self._mask(exc.message)
            if masked == exc.message:
                raise
            raise UpstreamStreamError(masked, provider=self._provider) from None


class EventStream(UpstreamStream[SSEEvent]):
    """An ``UpstreamStream`` over ``text/event-stream`` (SSE), lines bounded by ``max_sse_line_bytes``."""

    def decoder(self) -> SSEDecoder:
        return SSEDecoder(self._max_line)

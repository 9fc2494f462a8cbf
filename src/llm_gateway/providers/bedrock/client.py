"""The HTTP side of the Bedrock adapter: ``POST /model/{modelId}/converse`` and ``/converse-stream``, signed.

All translation lives in ``translate.py`` and ``stream.py`` (pure functions); credentials and signatures in
``auth.py``. This module names the wire's paths, heads and error shapes for the shared adapter
(``providers/adapter.py``) and decodes the stream's AWS event-stream frames with botocore's parser.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError  # type: ignore[import-untyped]
from botocore.utils import percent_encode  # type: ignore[import-untyped]

from llm_gateway.errors import ProviderProtocolError, UpstreamStreamError
from llm_gateway.http import DEFAULT_BOUNDS, ResponseTooLarge, UpstreamBounds, UpstreamResponse
from llm_gateway.providers.adapter import ErrorFields, HttpAdapter, UpstreamStream
from llm_gateway.providers.bedrock.auth import MASKED_GENERATIONS, SigV4Mask, SigV4Signer, resolve_credentials
from llm_gateway.providers.bedrock.params import dropped_params
from llm_gateway.providers.bedrock.stream import ConverseStreamTranslator
from llm_gateway.providers.bedrock.translate import from_converse_response, to_converse_request
from llm_gateway.providers.bedrock.wire import (
    BUSY_ERRORS,
    CALLER_ERRORS,
    CREDENTIAL_ERRORS,
    ENDPOINT,
    STREAM_CONTENT_TYPE,
    error_message,
    error_type,
)
from llm_gateway.schemas.core import Completion, Usage
from llm_gateway.settings import ConfigError, ProviderConfig

# Routes (model, stream) whose head prefix and signing headers are kept: groups name a handful of models.
MAX_CACHED_ROUTES = 256


def converse_path(model: str, *, stream: bool) -> str:
    """``/model/{modelId}/converse[-stream]``, the model id percent-encoded as botocore's serializer does (an ARN's
    ``:`` and ``/`` too), and signed as sent."""
    return f"/model/{percent_encode(model)}/{'converse-stream' if stream else 'converse'}"


class Route(NamedTuple):
    """What is fixed for one (model, stream): the URL signed, the head's start, and the headers signed."""

    url: str
    head: bytes
    signed_headers: dict[str, str]


class BedrockProvider(HttpAdapter):
    stream_content_type = STREAM_CONTENT_TYPE

    def __init__(self, name: str, config: ProviderConfig, bounds: UpstreamBounds = DEFAULT_BOUNDS) -> None:
        if not config.region:
            raise ConfigError(f"providers.{name}.region: required (or AWS_REGION) for a provider of type bedrock")
        bearer = config.api_key.get_secret_value() if config.api_key else ""
        endpoint = config.base_url or ENDPOINT.format(region=config.region)
        headers = {"Content-Type": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        super().__init__(
            name, config.model_copy(update={"base_url": endpoint}), bounds, path="", headers=headers, secret=bearer
        )
        self._endpoint = endpoint
        self._default_max_tokens = config.default_max_tokens
        self._fixed_secrets = [bearer, *config.headers.values()]
        self._seen_secrets: deque[tuple[str, ...]] = deque(maxlen=MASKED_GENERATIONS)
        self.mask = SigV4Mask(self._fixed_secrets)
        self._routes: dict[tuple[str, bool], Route] = {}
        self._signer: SigV4Signer | None = None
        if not bearer:  # a Bedrock API key, else SigV4 with the AWS credential chain (resolved now, or no start)
            credentials = resolve_credentials(name, config)
            self._signer = SigV4Signer(name, credentials, config.region, on_new_secrets=self._mask_secrets)

    def _mask_secrets(self, secrets: Iterable[str]) -> None:
        self._seen_secrets.append(tuple(secrets))
        self.mask = SigV4Mask([*self._fixed_secrets, *(value for seen in self._seen_secrets for value in seen)])

    # -- requests --------------------------------------------------------------------------------

    def _route(self, model: str, stream: bool) -> Route:
        route = self._routes.get((model, stream))
        if route is None:
            path = converse_path(model, stream=stream)
            accept = {"Accept": STREAM_CONTENT_TYPE} if stream else None
            head = self.request_head(path, accept)
            signed = {"Host": self.transport.host_header, "Content-Type": "application/json"}
            signed |= {"Accept": STREAM_CONTENT_TYPE if stream else "application/json"}
            route = Route(f"{self._endpoint}{path}", head, signed)
            if len(self._routes) < MAX_CACHED_ROUTES:
                self._routes[(model, stream)] = route
        return route

    async def _signed_head(self, model: str, payload: bytes, *, stream: bool, timeout: float) -> bytes:
        """The request's head: the route's, plus (SigV4) this request's date and signature."""
        route = self._route(model, stream)
        signer = self._signer
        if signer is None:
            return route.head
        auth = await signer.current(timeout)
        signed = signer.sign(auth, route.url, route.signed_headers, payload)
        return route.head + "".join(f"{name}: {value}\r\n" for name, value in signed.items()).encode("latin-1")

    def _payload(self, body: dict[str, Any], model: str) -> bytes:
        return orjson.dumps(to_converse_request(body, model, default_max_tokens=self._default_max_tokens))

    async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        payload = self._payload(body, model)
        head = await self._signed_head(model, payload, stream=False, timeout=timeout)
        parsed, _, status = await self.post_json(payload, timeout=timeout, head=head)
        if not isinstance(parsed.get("output"), dict):
            raise ProviderProtocolError(
                f"{self.name} answered without an output message", provider=self.name, upstream_status=status
            )
        return Completion(from_converse_response(parsed, model=model, created=int(time.time())))

    async def chat_stream(self, body: dict[str, Any], model: str, *, timeout: float, deadline: float) -> BedrockStream:
        payload = self._payload(body, model)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        head = await self._signed_head(model, payload, stream=True, timeout=timeout)
        response = await self.open_stream(payload, timeout=timeout, head=head)
        translator = ConverseStreamTranslator(model=model, created=int(time.time()), include_usage=include_usage)
        return BedrockStream(self, response, deadline, translator)

    async def aclose(self) -> None:
        if self._signer is not None:
            self._signer.close()
        await super().aclose()

    def dropped_params(self, body: dict[str, Any], model: str) -> tuple[str, ...]:
        return dropped_params(body, model, default_max_tokens=self._default_max_tokens)

    def error_fields(self, parsed: Any, headers: Mapping[str, str]) -> ErrorFields:
        """``x-amzn-ErrorType`` and ``{"message": ...}``: our credentials failing and a busy model fall back (even as
        a 4xx); the caller's mistakes (ValidationException, ResourceNotFoundException) go back to it."""
        kind = error_type(parsed, headers)
        message = error_message(parsed)
        text = f"{kind}: {message}" if kind and message else (message or kind)
        if kind in CALLER_ERRORS:
            return ErrorFields(text, "invalid_request_error", kind, retryable=False)
        retryable = True if kind in CREDENTIAL_ERRORS or kind in BUSY_ERRORS else None
        return ErrorFields(text, None, kind, retryable=retryable)


class BedrockStream(UpstreamStream[EventStreamMessage]):
    """ConverseStream's event-stream frames (decoded by botocore, bounded here) -> OpenAI chunk payloads.

    A frame past ``max_sse_line_bytes``, or that many bytes buffered without a frame completing, fails the stream;
    so does an exception frame (``:message-type: exception``) or an error frame."""

    def __init__(
        self, adapter: HttpAdapter, response: UpstreamResponse, deadline: float, translator: ConverseStreamTranslator
    ) -> None:
        super().__init__(adapter, response, deadline)
        self._translator = translator

    @property
    def usage(self) -> Usage | None:
        return Usage.from_openai(self._translator.usage)

    def decoder(self) -> FrameDecoder:
        return FrameDecoder(self._max_line, self.invalid)

    def translate(self, event: EventStreamMessage) -> list[bytes]:
        headers = event.headers
        kind = headers.get(":message-type")
        if kind == "exception":
            name = headers.get(":exception-type") or "exception"
            message = error_message(_json_or_none(event.payload)) or "no message"
            raise UpstreamStreamError(f"{self._provider} stream failed: {name}: {message}", provider=self._provider)
        if kind == "error":
            code, message = headers.get(":error-code") or "error", headers.get(":error-message") or "no message"
            raise UpstreamStreamError(f"{self._provider} stream failed: {code}: {message}", provider=self._provider)
        name = headers.get(":event-type")
        if kind != "event" or not isinstance(name, str):
            raise self.invalid()
        chunks = self._translator.feed(name, self.parse(event.payload))
        self.finished = self._translator.finished
        return [orjson.dumps(chunk) for chunk in chunks]

    def ended(self) -> None:
        if not self._translator.stopped:  # metadata (usage) after messageStop is expected, but the answer is whole
            raise UpstreamStreamError(f"{self._provider} ended the stream before messageStop", provider=self._provider)


class FrameDecoder:
    """AWS event-stream frames out of the body's bytes, by botocore's ``EventStreamBuffer``, bounded: a frame past
    ``limit`` bytes, or ``limit`` bytes buffered without a whole frame, raises ``ResponseTooLarge`` (after the
    frames completed before it went on: ``raise_refused``); a bad CRC or length is an invalid stream."""

    def __init__(self, limit: int, invalid: Callable[[], Exception]) -> None:
        self._buffer = EventStreamBuffer()
        self._limit = limit
        self._invalid = invalid
        self._pending = 0  # bytes fed to the buffer and not yet part of a frame read out
        self._refused: Exception | None = None

    def feed(self, chunk: bytes) -> list[EventStreamMessage]:
        self.raise_refused()
        self._buffer.add_data(chunk)
        self._pending += len(chunk)
        messages: list[EventStreamMessage] = []
        try:
            try:
                for message in self._buffer:
                    size = message.prelude.total_length
                    if size > self._limit:
                        raise ResponseTooLarge(f"an event-stream frame of {size} bytes, over {self._limit}")
                    self._pending -= size
                    messages.append(message)
            except ParserError:  # a bad CRC, a header or payload length past botocore's own bounds
                raise self._invalid() from None
            if self._pending > self._limit:
                raise ResponseTooLarge(f"{self._pending} event-stream bytes without a whole frame, over {self._limit}")
        except (ResponseTooLarge, UpstreamStreamError) as exc:
            if not messages:
                raise
            self._refused = exc
        return messages

    def raise_refused(self) -> None:
        if self._refused is not None:
            refused, self._refused = self._refused, None
            raise refused

    def end(self) -> list[EventStreamMessage]:
        self.raise_refused()
        return []


def _json_or_none(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None

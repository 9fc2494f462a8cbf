"""The HTTP side of the Anthropic adapter: POST /v1/messages, plain or streamed.

All translation lives in ``translate.py`` (pure functions); this module only moves bytes
and maps Anthropic's failures onto the gateway's error tree.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from llm_gateway.errors import ProviderProtocolError, ProviderRejected, UpstreamStreamError
from llm_gateway.providers.anthropic.translate import (
    AnthropicStreamTranslator,
    anthropic_error_message,
    from_anthropic_response,
    to_anthropic_request,
)
from llm_gateway.providers.anthropic.wire import API_VERSION
from llm_gateway.providers.http import check_deadline, is_event_stream, iter_sse, map_transport_errors, read_limited
from llm_gateway.providers.transport import HttpTransport, UpstreamResponse
from llm_gateway.schemas.core import Completion, Usage
from llm_gateway.settings import ProviderConfig

# Anthropic's error types -> OpenAI's, for the errors that go back to the caller (non-retryable 4xx).
_ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
}


class AnthropicProvider:
    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self._secret = config.api_key.get_secret_value() if config.api_key else ""
        self._default_max_tokens = config.default_max_tokens
        headers = {
            "x-api-key": self._secret,
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
            "accept": "application/json",
            **config.headers,
        }
        self._transport = HttpTransport(config.base_url)
        self._head = self._transport.request_head("/v1/messages", headers)
        self._stream_head = self._transport.request_head("/v1/messages", {**headers, "accept": "text/event-stream"})

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        payload = orjson.dumps(
            to_anthropic_request({**body, "stream": False}, model, default_max_tokens=self._default_max_tokens)
        )
        with map_transport_errors(self.name):
            response = await self._transport.post(self._head, payload, timeout=timeout)
            try:
                if response.status >= 400:
                    raise self._rejected(response.status, await read_limited(response))
                raw = await response.read()
            finally:
                response.release()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProviderProtocolError(
                f"{self.name} answered with invalid JSON", provider=self.name, upstream_status=response.status
            ) from None
        if not isinstance(parsed, dict) or parsed.get("type") == "error" or "content" not in parsed:
            raise ProviderProtocolError(
                f"{self.name} answered without a message", provider=self.name, upstream_status=response.status
            )
        return Completion(
            from_anthropic_response(parsed, model=str(parsed.get("model") or model), created=int(time.time()))
        )

    async def chat_stream(
        self, body: dict[str, Any], model: str, *, timeout: float, deadline: float
    ) -> AnthropicStream:
        request = to_anthropic_request({**body, "stream": True}, model, default_max_tokens=self._default_max_tokens)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        with map_transport_errors(self.name):
            response = await self._transport.post(self._stream_head, orjson.dumps(request), timeout=timeout)
            try:
                if response.status >= 400:
                    raise self._rejected(response.status, await read_limited(response))
                if not is_event_stream(response):
                    raise ProviderProtocolError(
                        f"{self.name} answered a stream request with {response.content_type or 'no content type'}",
                        provider=self.name,
                        upstream_status=response.status,
                    )
            except BaseException:
                response.release()
                raise
        translator = AnthropicStreamTranslator(model=model, created=int(time.time()), include_usage=include_usage)
        return AnthropicStream(self.name, response, translator, deadline, secret=self._secret)

    def _rejected(self, status: int, raw: bytes) -> ProviderRejected:
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        message = anthropic_error_message(parsed) or f"{self.name} returned HTTP {status}"
        if self._secret:
            message = message.replace(self._secret, "***")
        error = parsed.get("error") if isinstance(parsed, dict) else None
        kind = error.get("type") if isinstance(error, dict) else None
        return ProviderRejected(
            message,
            provider=self.name,
            upstream_status=status,
            error_type=_ERROR_TYPES.get(kind or "", "invalid_request_error"),
        )


class AnthropicStream:
    """Anthropic's SSE events -> OpenAI chunk payloads, translated event by event as they arrive."""

    def __init__(
        self,
        provider: str,
        response: UpstreamResponse,
        translator: AnthropicStreamTranslator,
        deadline: float,
        *,
        secret: str = "",
    ) -> None:
        self._provider = provider
        self._response = response
        self._translator = translator
        self._deadline = deadline
        self._secret = secret  # an error event that echoes our key must not carry it on to the caller
        self._iterator = self._chunks()

    @property
    def usage(self) -> Usage | None:
        return Usage.from_openai(self._translator.usage)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterator

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        with map_transport_errors(self._provider):
            async for event in iter_sse(self._response):
                check_deadline(self._provider, self._deadline)
                try:
                    data = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    raise UpstreamStreamError(
                        f"{self._provider} sent an invalid stream event", provider=self._provider
                    ) from None
                if not isinstance(data, dict):
                    raise UpstreamStreamError(f"{self._provider} sent an invalid stream event", provider=self._provider)
                try:
                    chunks = self._translator.feed(event.event, data)
                except UpstreamStreamError as exc:
                    if not self._secret or self._secret not in exc.message:
                        raise
                    raise UpstreamStreamError(
                        exc.message.replace(self._secret, "***"), provider=self._provider
                    ) from None
                for chunk in chunks:
                    yield orjson.dumps(chunk)
                if self._translator.finished:
                    return
        raise UpstreamStreamError(f"{self._provider} ended the stream before message_stop", provider=self._provider)

    async def aclose(self) -> None:
        await self._iterator.aclose()
        self._response.release()

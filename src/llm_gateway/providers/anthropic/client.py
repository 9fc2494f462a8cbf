"""The HTTP side of the Anthropic adapter: POST /v1/messages, plain or streamed, translated from chat or
passed through natively (``native.py``), and POST /v1/messages/count_tokens.

All translation lives in ``translate.py`` (pure functions); this module only names the wire's
paths, headers and error shapes for the shared adapter (``providers/adapter.py``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from llm_gateway.errors import ProviderProtocolError, UpstreamStreamError
from llm_gateway.http import DEFAULT_BOUNDS, SSEEvent, UpstreamBounds, UpstreamResponse
from llm_gateway.providers.adapter import ErrorFields, EventStream, HttpAdapter, passthrough_body
from llm_gateway.providers.anthropic.native import (
    NativeHeadCache,
    NativeStream,
    count_tokens_body,
    input_tokens,
    native_message,
)
from llm_gateway.providers.anthropic.translate import (
    AnthropicStreamTranslator,
    anthropic_error_message,
    dropped_params,
    from_anthropic_response,
    to_anthropic_request,
)
from llm_gateway.providers.anthropic.wire import API_VERSION
from llm_gateway.providers.base import NativeMessage
from llm_gateway.schemas.core import Completion, Usage
from llm_gateway.settings import ProviderConfig

# Anthropic's error types -> OpenAI's, for the errors that go back to the caller (non-retryable 4xx).
_ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
}


class AnthropicProvider(HttpAdapter):
    def __init__(self, name: str, config: ProviderConfig, bounds: UpstreamBounds = DEFAULT_BOUNDS) -> None:
        secret = config.api_key.get_secret_value() if config.api_key else ""
        headers = {"x-api-key": secret, "anthropic-version": API_VERSION, "content-type": "application/json"}
        super().__init__(name, config, bounds, path="/v1/messages", headers=headers, secret=secret)
        self._default_max_tokens = config.default_max_tokens
        self._native_heads = NativeHeadCache(self)

    async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        request = to_anthropic_request({**body, "stream": False}, model, default_max_tokens=self._default_max_tokens)
        parsed, _, status = await self.post_json(orjson.dumps(request), timeout=timeout)
        if parsed.get("type") == "error" or "content" not in parsed:
            raise ProviderProtocolError(
                f"{self.name} answered without a message", provider=self.name, upstream_status=status
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
        response = await self.open_stream(orjson.dumps(request), timeout=timeout)
        translator = AnthropicStreamTranslator(model=model, created=int(time.time()), include_usage=include_usage)
        return AnthropicStream(self, response, deadline, translator)

    # -- the Messages API passed through (``providers.base.NativeMessages``) --------------------

    async def messages(
        self, body: dict[str, Any], model: str, *, timeout: float, headers: Mapping[str, str]
    ) -> NativeMessage:
        head = self._native_heads.get(headers).message
        payload = passthrough_body(body, model, stream=False)
        parsed, raw, status = await self.post_json(payload, timeout=timeout, head=head)
        return native_message(self, parsed, raw, status)

    async def messages_stream(
        self, body: dict[str, Any], model: str, *, timeout: float, deadline: float, headers: Mapping[str, str]
    ) -> NativeStream:
        head = self._native_heads.get(headers).stream
        response = await self.open_stream(passthrough_body(body, model, stream=True), timeout=timeout, head=head)
        return NativeStream(self, response, deadline)

    async def count_tokens(
        self, body: dict[str, Any], model: str, *, timeout: float, headers: Mapping[str, str]
    ) -> int:
        head = self._native_heads.get(headers).count_tokens
        parsed, _, status = await self.post_json(count_tokens_body(body, model), timeout=timeout, head=head)
        return input_tokens(self, parsed, status)

    def dropped_params(self, body: dict[str, Any], model: str) -> tuple[str, ...]:
        return dropped_params(body, model, default_max_tokens=self._default_max_tokens)

    def error_fields(self, parsed: Any, headers: Mapping[str, str]) -> ErrorFields:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        kind = error.get("type") if isinstance(error, dict) else None
        return ErrorFields(anthropic_error_message(parsed), _ERROR_TYPES.get(kind or "", "invalid_request_error"))


class AnthropicStream(EventStream):
    """Anthropic's SSE events -> OpenAI chunk payloads, translated event by event as they arrive."""

    def __init__(
        self, adapter: HttpAdapter, response: UpstreamResponse, deadline: float, translator: AnthropicStreamTranslator
    ) -> None:
        super().__init__(adapter, response, deadline)
        self._translator = translator

    @property
    def usage(self) -> Usage | None:
        return Usage.from_openai(self._translator.usage)

    def translate(self, event: SSEEvent) -> list[bytes]:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise self.invalid() from None
        if not isinstance(data, dict):
            raise self.invalid()
        payloads = [orjson.dumps(chunk) for chunk in self._translator.feed(event.event, data)]
        self.finished = self._translator.finished
        return payloads

    def ended(self) -> None:
        raise UpstreamStreamError(f"{self._provider} ended the stream before message_stop", provider=self._provider)

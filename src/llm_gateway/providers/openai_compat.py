"""OpenAI and everything that speaks its wire format: Groq, vLLM, Ollama, llama.cpp server, ...

Such a vendor is configuration (a base URL and a key), not code. The request goes out as the
caller sent it, with only ``model`` replaced, so unknown fields pass through untouched; the
answer comes back as the upstream's own bytes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from llm_gateway.errors import ProviderProtocolError, ProviderRejected, UpstreamStreamError
from llm_gateway.providers.http import check_deadline, is_event_stream, iter_sse, map_transport_errors, read_limited
from llm_gateway.providers.transport import HttpTransport, UpstreamResponse
from llm_gateway.schemas.core import Completion, Usage
from llm_gateway.settings import ProviderConfig


class OpenAICompatProvider:
    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self._secret = config.api_key.get_secret_value() if config.api_key else ""
        headers = {
            "Authorization": f"Bearer {self._secret}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            **config.headers,
        }
        self._transport = HttpTransport(config.base_url)
        path = "/chat/completions"
        self._head = self._transport.request_head(path, headers)
        self._stream_head = self._transport.request_head(path, {**headers, "Accept": "text/event-stream"})

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        payload = orjson.dumps({**body, "model": model})
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
        if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list):
            raise ProviderProtocolError(
                f"{self.name} answered without choices", provider=self.name, upstream_status=response.status
            )
        return Completion(parsed, raw)

    async def chat_stream(self, body: dict[str, Any], model: str, *, timeout: float, deadline: float) -> OpenAIStream:
        payload = orjson.dumps({**body, "model": model, "stream": True})
        with map_transport_errors(self.name):
            response = await self._transport.post(self._stream_head, payload, timeout=timeout)
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
        return OpenAIStream(self.name, response, deadline, secret=self._secret)

    def _rejected(self, status: int, raw: bytes) -> ProviderRejected:
        error: dict[str, Any] = {}
        try:
            parsed = orjson.loads(raw)
            if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                error = parsed["error"]
        except orjson.JSONDecodeError:
            pass
        message = str(error.get("message") or f"{self.name} returned HTTP {status}")
        if self._secret:
            message = message.replace(self._secret, "***")
        return ProviderRejected(
            message,
            provider=self.name,
            upstream_status=status,
            error_type=_str_or_none(error.get("type")),
            error_code=_str_or_none(error.get("code")),
            param=_str_or_none(error.get("param")),
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class OpenAIStream:
    """Relays the upstream's chunk payloads as they come; watches for usage, errors and the end."""

    def __init__(self, provider: str, response: UpstreamResponse, deadline: float, *, secret: str = "") -> None:
        self._provider = provider
        self._response = response
        self._deadline = deadline
        self._secret = secret  # an error event that echoes our key must not carry it on to the caller
        self.usage: Usage | None = None
        self._iterator = self._chunks()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterator

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        finished = False
        with map_transport_errors(self._provider):
            async for event in iter_sse(self._response):
                check_deadline(self._provider, self._deadline)
                if event.data == b"[DONE]":
                    return
                chunk = self._inspect(event.data)
                finished = finished or _has_finish_reason(chunk)
                yield event.data
        # Some OpenAI-compatible servers omit [DONE]; a finish_reason already told us the answer is whole.
        if not finished:
            raise UpstreamStreamError(
                f"{self._provider} ended the stream before the answer was complete", provider=self._provider
            )

    def _inspect(self, data: bytes) -> dict[str, Any]:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamStreamError(
                f"{self._provider} sent an invalid stream event", provider=self._provider
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamStreamError(f"{self._provider} sent an invalid stream event", provider=self._provider)
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else None
            if isinstance(message, str) and self._secret:
                message = message.replace(self._secret, "***")
            raise UpstreamStreamError(
                f"{self._provider} stream failed: {message or 'error event'}", provider=self._provider
            )
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        return chunk

    async def aclose(self) -> None:
        await self._iterator.aclose()
        self._response.release()


def _has_finish_reason(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list):
        return False
    first = choices[0]
    return isinstance(first, dict) and bool(first.get("finish_reason"))

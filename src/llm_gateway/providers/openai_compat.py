"""OpenAI and everything that speaks its wire format: Groq, vLLM, Ollama, llama.cpp server, ...

Such a vendor is configuration (a base URL and a key), not code. The request goes out as the
caller sent it, with only ``model`` replaced, so unknown fields pass through untouched; the
answer comes back as the upstream's own bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from llm_gateway.errors import ProviderProtocolError, UpstreamStreamError
from llm_gateway.http import DEFAULT_BOUNDS, SSEEvent, UpstreamBounds, UpstreamResponse
from llm_gateway.providers.adapter import ErrorFields, EventStream, HttpAdapter
from llm_gateway.schemas.core import Completion, Usage
from llm_gateway.settings import ProviderConfig


class OpenAICompatProvider(HttpAdapter):
    """A subclass whose server puts the same wire elsewhere (Azure) overrides ``credentials`` and the two paths,
    or ``chat_head``/``embeddings_head`` when the path depends on the model."""

    chat_path = "/chat/completions"
    embeddings_path = "/embeddings"

    def __init__(self, name: str, config: ProviderConfig, bounds: UpstreamBounds = DEFAULT_BOUNDS) -> None:
        auth, secret = self.credentials(config)
        headers = {**auth, "Content-Type": "application/json"}
        super().__init__(name, config, bounds, path=self.chat_path, headers=headers, secret=secret)
        self._renames_cap = config.max_tokens_field == "max_tokens"
        self._omits_stream_options = config.stream_options == "omit"
        self._embeddings_head = self.request_head(self.embeddings_path)

    def credentials(self, config: ProviderConfig) -> tuple[dict[str, str], str]:
        """The auth header(s) every call carries, and the secret in them (masked in every message)."""
        secret = config.api_key.get_secret_value() if config.api_key else ""
        return {"Authorization": f"Bearer {secret}"}, secret

    def chat_head(self, model: str, *, stream: bool) -> bytes | None:
        """The head of a chat call to ``model``; None: the adapter's own (one path for every model)."""
        return None

    def embeddings_head(self, model: str) -> bytes:
        return self._embeddings_head

    def _outgoing(self, body: dict[str, Any], model: str, **fields: Any) -> bytes:
        """The caller's body with only ``model`` replaced (and the cap under the name this server takes)."""
        out = {**body, "model": model, **fields}
        if self._renames_cap and "max_completion_tokens" in out and "max_tokens" not in out:
            out["max_tokens"] = out.pop("max_completion_tokens")
        if self._omits_stream_options:  # a server that sends a stream's usage unasked, and refuses being asked
            out.pop("stream_options", None)
        return orjson.dumps(out)

    async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        payload = self._outgoing(body, model)
        parsed, raw, status = await self.post_json(payload, timeout=timeout, head=self.chat_head(model, stream=False))
        if not isinstance(parsed.get("choices"), list):
            raise ProviderProtocolError(
                f"{self.name} answered without choices", provider=self.name, upstream_status=status
            )
        return Completion(parsed, raw)

    async def embeddings(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        payload = orjson.dumps({**body, "model": model})
        parsed, raw, status = await self.post_json(payload, timeout=timeout, head=self.embeddings_head(model))
        if not isinstance(parsed.get("data"), list):
            raise ProviderProtocolError(
                f"{self.name} answered embeddings without data", provider=self.name, upstream_status=status
            )
        return Completion(parsed, raw)

    def embeddings_dropped_params(self, body: dict[str, Any], model: str) -> tuple[str, ...]:
        return ()  # passed through: the upstream judges every field

    async def chat_stream(self, body: dict[str, Any], model: str, *, timeout: float, deadline: float) -> OpenAIStream:
        payload = self._outgoing(body, model, stream=True)
        response = await self.open_stream(payload, timeout=timeout, head=self.chat_head(model, stream=True))
        return self.relay(response, deadline)

    def relay(self, response: UpstreamResponse, deadline: float) -> OpenAIStream:
        """The stream over an accepted chat stream response."""
        return OpenAIStream(self, response, deadline)

    def error_fields(self, parsed: Any, headers: Mapping[str, str]) -> ErrorFields:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if not isinstance(error, dict):
            return ErrorFields(None)
        message = error.get("message")
        return ErrorFields(
            str(message) if message else None,
            _str_or_none(error.get("type")),
            _str_or_none(error.get("code")),
            _str_or_none(error.get("param")),
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class OpenAIStream(EventStream):
    """Relays the upstream's chunk payloads as they come; watches for usage, errors and the end."""

    _finish_seen = False

    def translate(self, event: SSEEvent) -> tuple[bytes, ...]:
        data = event.data
        if data == b"[DONE]":
            self.finished = True
            return ()
        return self.relay_chunk(data, self.parse(data))

    def relay_chunk(self, data: bytes, chunk: dict[str, Any]) -> tuple[bytes, ...]:
        """One chunk (``data``, parsed as ``chunk``) read for errors, usage and the finish, and relayed."""
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise UpstreamStreamError(
                f"{self._provider} stream failed: {message or 'error event'}", provider=self._provider
            )
        usage = chunk.get("usage")
        if usage:
            self._usage = Usage.from_openai(usage)
        if not self._finish_seen:
            self._finish_seen = _has_finish_reason(chunk)
        self.keep_parsed(data, chunk)
        return (data,)

    def ended(self) -> None:
        # Some OpenAI-compatible servers omit [DONE]; a finish_reason already told us the answer is whole.
        if not self._finish_seen:
            super().ended()


def _has_finish_reason(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list):
        return False
    first = choices[0]
    return isinstance(first, dict) and bool(first.get("finish_reason"))

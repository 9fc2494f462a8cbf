"""The Chat Completions surface (``POST /v1/chat/completions``): OpenAI's format, in and out.

Every deployment is called in OpenAI's format: an ``openai`` one with the caller's body as it is,
an ``anthropic`` one through its adapter's translation. Streams are OpenAI's chunk payloads.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway import tokens
from llm_gateway.cache import cache_key, chunks_to_completion, completion_to_chunks, is_cacheable, is_complete
from llm_gateway.providers.base import Provider
from llm_gateway.schemas.core import ChatRequest, ChunkStream, Completion, Usage
from llm_gateway.surfaces.base import StreamObserver, answer_model

# Message fields a streamed delta carries generated text in (counted against the reservation).
_TEXT_FIELDS = ("content", "reasoning_content", "refusal")


class ChatSurface:
    name = "chat"
    route = "/v1/chat/completions"
    operation = "chat"

    async def prompt_tokens(self, request: ChatRequest) -> int:
        return await tokens.estimate_prompt_tokens_async(request.body, request.model)

    def completion_cap(self, request: ChatRequest) -> int | None:
        requested = request.body.get("max_completion_tokens") or request.body.get("max_tokens")
        return requested if isinstance(requested, int) else None

    def choices(self, request: ChatRequest) -> int:
        n = request.body.get("n")
        return n if isinstance(n, int) and n > 1 else 1

    def upstream_body(self, request: ChatRequest, cap: int | None) -> dict[str, Any]:
        """A gateway-chosen cap goes as ``max_completion_tokens``; a stream always asks for usage (for the
        gateway's own settlement: ``relay_item`` strips it again when the caller did not ask)."""
        body = request.body
        if cap is not None:
            body = {**body, "max_completion_tokens": cap}
        if request.stream:
            body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        return body

    def cache_key(self, request: ChatRequest, scope: str | None) -> str | None:
        if not is_cacheable(request.body):
            return None
        return cache_key(request.body, group=request.model, scope_id=scope)

    def storable(self, answer: dict[str, Any], *, capped_by_gateway: bool) -> bool:
        if not is_complete(answer):
            return False
        return not (capped_by_gateway and any(choice.get("finish_reason") == "length" for choice in answer["choices"]))

    def to_cache(self, answer: dict[str, Any]) -> dict[str, Any]:
        return answer

    def from_cache(self, stored: dict[str, Any]) -> dict[str, Any]:
        return stored

    def replay(self, stored: dict[str, Any], request: ChatRequest) -> list[bytes]:
        return completion_to_chunks(stored, include_usage=request.include_usage)

    async def answer(
        self, provider: Provider, model: str, request: ChatRequest, body: dict[str, Any], *, timeout: float
    ) -> Completion:
        return await provider.chat(body, model, timeout=timeout)

    async def open_stream(
        self,
        provider: Provider,
        model: str,
        request: ChatRequest,
        body: dict[str, Any],
        *,
        timeout: float,
        deadline: float,
    ) -> ChunkStream:
        return await provider.chat_stream(body, model, timeout=timeout, deadline=deadline)

    def has_content(self, item: bytes) -> bool:
        try:
            parsed = orjson.loads(item)
        except orjson.JSONDecodeError:
            return True
        choices = parsed.get("choices") if isinstance(parsed, dict) else None
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return True  # a usage-only or unknown chunk: nothing to wait for
        choice = choices[0]
        delta = choice.get("delta")
        if choice.get("finish_reason") or not isinstance(delta, dict):
            return True
        return bool(
            delta.get("content")
            or delta.get("tool_calls")
            or delta.get("refusal")
            or delta.get("reasoning_content")
            or delta.get("function_call")
        )

    def dropped_params(
        self, provider: Provider, model: str, request: ChatRequest, body: dict[str, Any]
    ) -> tuple[str, ...]:
        return provider.dropped_params(body, model)

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        return Usage.from_openai(answer.get("usage"))

    def answer_text(self, answer: dict[str, Any]) -> str:
        return tokens.completion_text(answer)

    def response_model(self, answer: dict[str, Any]) -> str | None:
        return answer_model(answer)

    def finish_reasons(self, answer: dict[str, Any]) -> tuple[str, ...]:
        return tuple(
            str(choice["finish_reason"])
            for choice in answer.get("choices") or ()
            if isinstance(choice, dict) and choice.get("finish_reason")
        )

    def read_item(
        self, item: bytes, observer: StreamObserver, parsed: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        chunk = parsed if parsed is not None else _json_object(item)
        if chunk is None:
            return None
        model = chunk.get("model")
        if isinstance(model, str):
            observer.model(model)
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                _read_choice(choice, observer)
        return chunk

    def relay_item(self, item: bytes, parsed: dict[str, Any] | None, request: ChatRequest) -> bytes | None:
        """OpenAI sends ``usage`` in a stream only when asked for (the gateway asked for itself)."""
        if request.include_usage or parsed is None or "usage" not in parsed:
            return item
        if parsed.get("choices") == []:
            return None  # the usage chunk itself
        if parsed["usage"] is None:
            stripped = item.replace(b',"usage":null', b"", 1)
            if len(stripped) < len(item):
                return stripped
        return orjson.dumps({name: value for name, value in parsed.items() if name != "usage"})

    def assemble(self, items: list[bytes]) -> dict[str, Any]:
        chunks = []
        for item in items:
            try:
                chunk = orjson.loads(item)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict):
                chunks.append(chunk)
        return chunks_to_completion(chunks)


def _json_object(item: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(item)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _read_choice(choice: dict[str, Any], observer: StreamObserver) -> None:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        for name in _TEXT_FIELDS:
            text = delta.get(name)
            if isinstance(text, str) and text:
                observer.text(text)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                _read_function(call.get("function"), observer)
        _read_function(delta.get("function_call"), observer)
    finish = choice.get("finish_reason")
    if finish:
        index = choice.get("index")
        observer.finish(index if isinstance(index, int) else 0, str(finish))


def _read_function(function: Any, observer: StreamObserver) -> None:
    if isinstance(function, dict):
        for name in ("name", "arguments"):
            text = function.get(name)
            if isinstance(text, str) and text:
                observer.text(text)

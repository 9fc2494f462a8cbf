"""The Messages surface (``POST /v1/messages``): Anthropic's format, in and out.

An ``anthropic`` deployment gets the caller's body natively (only ``model`` replaced; the caller's
``anthropic-version`` and ``anthropic-beta`` forwarded) and its bytes are relayed as they come,
so thinking, signatures, ``cache_control``, documents and server tools pass untouched. Any other
deployment gets a translation to Chat Completions (``translate.messages_chat``) and its answer,
streams included, is translated back; what it cannot carry skips it (``UnsupportedFeature``).
Stream items are Anthropic's SSE events, framed (``event: …\\ndata: …\\n\\n``).
"""

from __future__ import annotations

from typing import Any

from llm_gateway.cache import cache_key
from llm_gateway.providers.base import NativeMessages, Provider
from llm_gateway.schemas.anthropic import MessagesRequest
from llm_gateway.schemas.anthropic_stream import (
    MessageAssembly,
    is_complete_message,
    message_text,
    message_to_events,
    message_usage,
    stop_reasons,
)
from llm_gateway.schemas.anthropic_tokens import estimate_messages_tokens_async
from llm_gateway.schemas.core import ChunkStream, Completion, Usage
from llm_gateway.schemas.sse_frames import read_event, split_frame
from llm_gateway.surfaces.base import StreamObserver, answer_model
from llm_gateway.surfaces.translated import TranslatedStream
from llm_gateway.translate.messages_chat import ChatToMessagesStream, chat_to_message, dropped_params, messages_to_chat

# The events that carry an answer's content: after the first of them a stream cannot fall back.
_CONTENT_EVENTS = frozenset({"content_block_start", "content_block_delta", "message_delta", "message_stop", "error"})
# Text a delta carries, by delta type (counted against the reservation).
_DELTA_TEXT = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}


class MessagesSurface:
    name = "messages"
    route = "/v1/messages"
    operation = "chat"

    async def prompt_tokens(self, request: MessagesRequest) -> int:
        return await estimate_messages_tokens_async(request.body, request.model)

    def completion_cap(self, request: MessagesRequest) -> int | None:
        return request.max_tokens  # required by the Messages API: always the caller's

    def choices(self, request: MessagesRequest) -> int:
        return 1

    def upstream_body(self, request: MessagesRequest, cap: int | None) -> dict[str, Any]:
        return request.body if cap is None else {**request.body, "max_tokens": cap}

    def cache_key(self, request: MessagesRequest, scope: str | None) -> str | None:
        # The surface's name in the group: a Messages answer is never replayed to a chat caller, or back.
        return cache_key(request.body, group=f"messages:{request.model}", scope_id=scope)

    def storable(self, answer: dict[str, Any], *, capped_by_gateway: bool) -> bool:
        return is_complete_message(answer) and not (capped_by_gateway and answer.get("stop_reason") == "max_tokens")

    def to_cache(self, answer: dict[str, Any]) -> dict[str, Any]:
        return answer

    def from_cache(self, stored: dict[str, Any]) -> dict[str, Any]:
        return stored

    def replay(self, stored: dict[str, Any], request: MessagesRequest) -> list[bytes]:
        return message_to_events(stored)

    async def answer(
        self, provider: Provider, model: str, request: MessagesRequest, body: dict[str, Any], *, timeout: float
    ) -> Completion:
        if isinstance(provider, NativeMessages):
            native = await provider.messages(body, model, timeout=timeout, headers=request.forward)
            return Completion(native.body, native.raw)
        completion = await provider.chat(messages_to_chat(body), model, timeout=timeout)
        answered = completion.body.get("model")
        return Completion(chat_to_message(completion.body, model=answered if isinstance(answered, str) else model))

    async def open_stream(
        self,
        provider: Provider,
        model: str,
        request: MessagesRequest,
        body: dict[str, Any],
        *,
        timeout: float,
        deadline: float,
    ) -> ChunkStream:
        if isinstance(provider, NativeMessages):
            return await provider.messages_stream(
                body, model, timeout=timeout, deadline=deadline, headers=request.forward
            )
        upstream = await provider.chat_stream(messages_to_chat(body), model, timeout=timeout, deadline=deadline)
        return TranslatedStream(upstream, ChatToMessagesStream(model=model))

    def has_content(self, item: bytes) -> bool:
        return split_frame(item)[0] in _CONTENT_EVENTS

    def dropped_params(
        self, provider: Provider, model: str, request: MessagesRequest, body: dict[str, Any]
    ) -> tuple[str, ...]:
        return () if isinstance(provider, NativeMessages) else dropped_params(body)

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        return message_usage(answer.get("usage"))

    def answer_text(self, answer: dict[str, Any]) -> str:
        return message_text(answer)

    def response_model(self, answer: dict[str, Any]) -> str | None:
        return answer_model(answer)

    def finish_reasons(self, answer: dict[str, Any]) -> tuple[str, ...]:
        return stop_reasons(answer)

    def read_item(
        self, item: bytes, observer: StreamObserver, parsed: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        event = read_event(item)[1]
        if event is None:
            return None
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict):
                text = delta.get(_DELTA_TEXT.get(str(delta.get("type")), ""))
                if isinstance(text, str) and text:
                    observer.text(text)
        elif kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict) and isinstance(message.get("model"), str):
                observer.model(message["model"])
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                observer.finish(0, str(delta["stop_reason"]))
        return event

    def relay_item(self, item: bytes, parsed: dict[str, Any] | None, request: MessagesRequest) -> bytes | None:
        return item

    def assemble(self, items: list[bytes]) -> dict[str, Any]:
        assembly = MessageAssembly()
        for item in items:
            event, parsed = read_event(item)
            if parsed is not None:
                assembly.feed(event, parsed)
        return assembly.result()

"""The Responses surface (``POST /v1/responses``): OpenAI's Responses API, in and out.

A deployment whose provider speaks the Responses API natively (``responses: native``) gets the caller's
body with only ``model`` replaced, and its answer and typed events are relayed as they come. Every other
deployment gets a translation to Chat Completions (``translate.responses_chat``; an ``anthropic`` one then
through its adapter's own chat translation, so each provider that speaks chat speaks Responses too) and
its answer, streams included, is translated back. Built-in tools exist only natively: a request with one
skips translated deployments (``UnsupportedFeature``).

A continued conversation (``previous_response_id``, loaded from the gateway's store by the route) passes
through as it is to the native deployment that created it, which holds it too; any other deployment gets
the conversation expanded into the input, so a conversation survives a fallback to another provider.
Stream items are OpenAI's typed events, framed (``event: …\\ndata: …\\n\\n``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from llm_gateway.cache import cache_key
from llm_gateway.errors import UnsupportedFeature
from llm_gateway.providers.base import NativeResponses, Provider
from llm_gateway.schemas.core import ChunkStream, Completion, Usage
from llm_gateway.schemas.responses import ResponsesRequest
from llm_gateway.schemas.responses_tokens import estimate_responses_tokens_async
from llm_gateway.schemas.sse_frames import frame, read_event, split_frame
from llm_gateway.surfaces.base import StreamObserver, answer_model
from llm_gateway.surfaces.translated import TranslatedStream
from llm_gateway.translate.responses_chat import (
    chat_to_response,
    dropped_params,
    input_items,
    is_whole,
    new_response_id,
    response_finish_reasons,
    response_text,
    response_usage,
    responses_to_chat,
)
from llm_gateway.translate.responses_chat_stream import ChatToResponsesStream, ResponseAssembly, response_to_events

# Events that announce a response before it has content: until one of any other kind, a stream may fall back.
_PREAMBLE_EVENTS = frozenset(
    {"response.created", "response.in_progress", "response.queued", "response.output_item.added",
     "response.content_part.added"}
)  # fmt: skip
# Events whose ``delta`` is generated text (counted against the reservation).
_TEXT_DELTAS = frozenset(
    {"response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta",
     "response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)  # fmt: skip
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesSurface:
    name = "responses"
    route = "/v1/responses"
    operation = "chat"

    async def prompt_tokens(self, request: ResponsesRequest) -> int:
        return await estimate_responses_tokens_async(request.body, request.history(), request.model)

    def completion_cap(self, request: ResponsesRequest) -> int | None:
        cap = request.body.get("max_output_tokens")
        return cap if isinstance(cap, int) else None

    def choices(self, request: ResponsesRequest) -> int:
        return 1

    def upstream_body(self, request: ResponsesRequest, cap: int | None) -> dict[str, Any]:
        return request.body if cap is None else {**request.body, "max_output_tokens": cap}

    def cache_key(self, request: ResponsesRequest, scope: str | None) -> str | None:
        # A stored response must be a new one (its own id, kept for retrieval); a continued conversation's
        # answer depends on state the body does not show.
        if request.store or request.previous_response_id is not None:
            return None
        return cache_key(request.body, group=f"responses:{request.model}", scope_id=scope)

    def storable(self, answer: dict[str, Any], *, capped_by_gateway: bool) -> bool:
        return is_whole(answer)  # a cap (the gateway's or the caller's) that cut it made it incomplete

    def to_cache(self, answer: dict[str, Any]) -> dict[str, Any]:
        return answer

    def from_cache(self, stored: dict[str, Any]) -> dict[str, Any]:
        return stored

    def replay(self, stored: dict[str, Any], request: ResponsesRequest) -> list[bytes]:
        return [frame(event, orjson.dumps(data)) for event, data in response_to_events(stored)]

    # -- one upstream attempt ----------------------------------------------------------------

    async def answer(
        self, provider: Provider, model: str, request: ResponsesRequest, body: dict[str, Any], *, timeout: float
    ) -> Completion:
        if isinstance(provider, NativeResponses):
            return await provider.responses(native_body(request, body, provider.name), model, timeout=timeout)
        chat = _chat_body(provider, request, body)
        completion = await provider.chat(chat, model, timeout=timeout)
        answered = completion.body.get("model")
        return Completion(
            chat_to_response(
                completion.body,
                body,
                response_id=new_response_id(),
                model=answered if isinstance(answered, str) else model,
                created_at=int(time.time()),
            )
        )

    async def open_stream(
        self,
        provider: Provider,
        model: str,
        request: ResponsesRequest,
        body: dict[str, Any],
        *,
        timeout: float,
        deadline: float,
    ) -> ChunkStream:
        if isinstance(provider, NativeResponses):
            return await provider.responses_stream(
                native_body(request, body, provider.name), model, timeout=timeout, deadline=deadline
            )
        chat = _chat_body(provider, request, body)
        upstream = await provider.chat_stream(chat, model, timeout=timeout, deadline=deadline)
        translator = ChatToResponsesStream(
            body, response_id=new_response_id(), model=model, created_at=int(time.time())
        )
        return TranslatedStream(upstream, translator)

    def has_content(self, item: bytes) -> bool:
        return split_frame(item)[0] not in _PREAMBLE_EVENTS

    def dropped_params(
        self, provider: Provider, model: str, request: ResponsesRequest, body: dict[str, Any]
    ) -> tuple[str, ...]:
        if isinstance(provider, NativeResponses):
            return ()
        own = dropped_params(body)
        chat = responses_to_chat(body, portable_history(request.history()))
        return own + tuple(name for name in provider.dropped_params(chat, model) if name not in own)

    # -- answers -----------------------------------------------------------------------------

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        return response_usage(answer)

    def answer_text(self, answer: dict[str, Any]) -> str:
        return response_text(answer)

    def response_model(self, answer: dict[str, Any]) -> str | None:
        return answer_model(answer)

    def finish_reasons(self, answer: dict[str, Any]) -> tuple[str, ...]:
        return response_finish_reasons(answer)

    # -- streams -----------------------------------------------------------------------------

    def read_item(
        self, item: bytes, observer: StreamObserver, parsed: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        kind, event = read_event(item)
        if event is None:
            return None
        kind = str(event.get("type") or kind)
        if kind in _TEXT_DELTAS:
            delta = event.get("delta")
            if isinstance(delta, str) and delta:
                observer.text(delta)
        elif kind == "response.output_item.added":
            added = event.get("item")
            if isinstance(added, dict) and isinstance(added.get("name"), str):
                observer.text(added["name"])  # a function call's name is generated too
        elif kind == "response.created" or kind in TERMINAL_EVENTS:
            response = event.get("response")
            if isinstance(response, dict):
                if isinstance(response.get("model"), str):
                    observer.model(response["model"])
                if kind in TERMINAL_EVENTS:
                    for reason in response_finish_reasons(response):
                        observer.finish(0, reason)
        return event

    def relay_item(self, item: bytes, parsed: dict[str, Any] | None, request: ResponsesRequest) -> bytes | None:
        return item

    def assemble(self, items: list[bytes]) -> dict[str, Any]:
        assembly = ResponseAssembly()
        for item in items:
            event = read_event(item)[1]
            if event is not None:
                assembly.feed(event)
        return assembly.result()


def native_body(request: ResponsesRequest, body: dict[str, Any], provider: str) -> dict[str, Any]:
    """The body a native deployment gets: as it is, unless it continues a conversation that deployment's
    provider does not hold (created elsewhere, or translated): then with the conversation in its input."""
    previous = request.previous
    if previous is None or (previous.native and previous.provider == provider):
        return body
    expanded = {name: value for name, value in body.items() if name != "previous_response_id"}
    expanded["input"] = [*portable_history(previous.history()), *input_items(body)]
    return expanded


def portable_history(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stored conversation as any provider can take it as input: without item ids (another provider's, or
    the gateway's own, which no upstream knows) and without reasoning items (encrypted for the provider and
    the organisation that produced them)."""
    return [
        {name: value for name, value in item.items() if name != "id"}
        for item in items
        if item.get("type") != "reasoning"
    ]


def _chat_body(provider: Provider, request: ResponsesRequest, body: dict[str, Any]) -> dict[str, Any]:
    if request.builtin_tools:
        tool = request.builtin_tools[0]
        raise UnsupportedFeature(f"The built-in tool '{tool}'", provider=provider.name, param="tools")
    return responses_to_chat(body, portable_history(request.history()))

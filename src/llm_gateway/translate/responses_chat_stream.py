"""OpenAI ``chat.completion.chunk`` objects -> OpenAI Responses stream events, one chunk at a time.

Pure, synchronous and linear: it keeps the open output item's pieces (joined once, when it closes) and the
closed items (the terminal event carries them all), never the chunks. The sequence is OpenAI's:
``response.created``, ``response.in_progress``; per output item ``output_item.added``, its content parts
(``content_part.added``, text or refusal deltas, their done event, ``content_part.done``) or its arguments
deltas and done, ``output_item.done``; then ``response.completed`` or ``response.incomplete``. Chat sends
usage in a choice-less chunk after the finish reason, so the terminal event waits for it (or ``finish()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.schemas.core import Usage
from llm_gateway.schemas.sse_frames import frame as sse_frame
from llm_gateway.translate.chat_wire import first_choice, tool_call_delta
from llm_gateway.translate.responses_chat_answer import (
    call_item,
    message_item,
    new_call_item_id,
    new_message_id,
    outcome,
    output_logprobs,
    refusal_part,
    response_skeleton,
    responses_usage,
    string,
    text_part,
    unique_call_id,
)
from llm_gateway.translate.responses_events import (
    Event,
    EventLog,
    ResponseAssembly,
    arguments_delta,
    call_done,
    closing,
    item_added,
    item_done,
    opening,
    part_added,
    part_delta,
    part_done,
    response_to_events,
)

__all__ = ["ChatToResponsesStream", "ResponseAssembly", "frame", "response_to_events"]


def frame(event_type: str, data: dict[str, Any]) -> bytes:
    """One event as OpenAI sends it: ``event: <type>\\ndata: <json>\\n\\n``."""
    return sse_frame(event_type, orjson.dumps(data))


@dataclass(slots=True)
class _Message:
    """The open message item: its finished parts and the open one's pieces."""

    id: str
    index: int
    parts: list[dict[str, Any]] = field(default_factory=list)
    kind: str | None = None  # the open part's type: "output_text" or "refusal"
    pieces: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Call:
    """The open function_call item; ``chat_index``/``upstream_id``: how the upstream numbers and names it."""

    id: str
    index: int
    call_id: str
    name: str
    chat_index: int | None
    upstream_id: str | None
    pieces: list[str] = field(default_factory=list)


class ChatToResponsesStream:
    """OpenAI chat.completion.chunk dicts -> Responses stream events ``(type, data)``, one chunk at a time."""

    def __init__(self, request: dict[str, Any], *, response_id: str, model: str, created_at: int) -> None:
        self._response = response_skeleton(request, response_id=response_id, model=model, created_at=created_at)
        self._log = EventLog()
        self._started = False  # response.created sent
        self._finished = False  # the terminal event sent
        self._output: list[dict[str, Any]] = []  # the closed items, in order
        self._message: _Message | None = None
        self._call: _Call | None = None
        self._closed_calls: dict[int, str | None] = {}  # chat index -> the upstream id of a closed call
        self._call_ids: set[str] = set()
        self._finish_reason: str | None = None
        self._chat_usage: dict[str, Any] | None = None
        self._usage: Usage | None = None

    @property
    def usage(self) -> Usage | None:
        """What the upstream reported (input = prompt_tokens, output = completion_tokens), once it did."""
        return self._usage

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """One upstream chunk -> zero or more ``(event type, data)``; nothing for an empty delta, nor for any
        chunk after the terminal event."""
        if self._finished or not isinstance(chunk, dict):
            return []
        events = self._start()
        raw_usage = chunk.get("usage")
        usage = Usage.from_openai(raw_usage)
        if usage is not None and isinstance(raw_usage, dict):
            self._usage, self._chat_usage = usage, raw_usage
        choice = first_choice(chunk)
        if choice is not None and self._finish_reason is None:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                events.extend(self._delta(delta, choice.get("logprobs")))
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and finish:
                self._finish_reason = finish
                events.extend(self._close_item())  # its done events go out now; the terminal one waits for usage
        if usage is not None and self._finish_reason is not None:
            events.extend(self._closing())  # chat's usage chunk (or a server's usage beside the finish reason)
        return events

    def finish(self) -> list[Event]:
        """The closing events once the upstream ended whole (also when it sent no usage or no finish reason)."""
        if self._finished:
            return []
        return [*self._start(), *self._closing()]

    # ------------------------------------------------------------------------------- the response

    def _start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        return opening(self._log, self._response)

    def _closing(self) -> list[Event]:
        events = self._close_item()
        status, incomplete = outcome(self._finish_reason)
        response = {**self._response, "status": status, "incomplete_details": incomplete}
        response.update(output=list(self._output), usage=responses_usage(self._chat_usage))
        self._finished = True
        return events + closing(self._log, response)

    def _close_item(self) -> list[Event]:
        # Only the last item can be the one a length or content filter cut.
        status = outcome(self._finish_reason)[0] if self._finish_reason else "completed"
        if self._message is not None:
            return self._close_message(status)
        if self._call is not None:
            return self._close_call(status)
        return []

    # ------------------------------------------------------------------------------- messages

    def _delta(self, delta: dict[str, Any], logprobs: Any) -> list[Event]:
        # Reasoning some servers send (reasoning_content) is not relayed: see chat_to_response.
        events: list[Event] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            events.extend(self._text("output_text", text, output_logprobs(logprobs)))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            events.extend(self._text("refusal", refusal, []))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                events.extend(self._tool_call(call))
        return events

    def _text(self, kind: str, text: str, logprobs: list[dict[str, Any]]) -> list[Event]:
        events = self._close_call() if self._call is not None else []
        message = self._message
        if message is None:
            message = self._message = _Message(new_message_id(), len(self._output))
            events.append(item_added(self._log, message.index, message_item(message.id, [], "in_progress")))
        if message.kind != kind:
            events.extend(self._close_part(message))
            message.kind = kind
            start = text_part("", []) if kind == "output_text" else refusal_part("")
            events.append(part_added(self._log, message.id, message.index, len(message.parts), start))
        message.pieces.append(text)
        message.logprobs.extend(logprobs)
        events.append(part_delta(self._log, message.id, message.index, len(message.parts), kind, text, logprobs))
        return events

    def _close_part(self, message: _Message) -> list[Event]:
        if message.kind is None:
            return []
        joined = "".join(message.pieces)
        part = text_part(joined, message.logprobs) if message.kind == "output_text" else refusal_part(joined)
        events = part_done(self._log, message.id, message.index, len(message.parts), part)
        message.parts.append(part)
        message.kind, message.pieces, message.logprobs = None, [], []
        return events

    def _close_message(self, status: str = "completed") -> list[Event]:
        message = self._message
        if message is None:
            return []
        events = self._close_part(message)
        item = message_item(message.id, message.parts, status)
        self._output.append(item)
        self._message = None
        return [*events, item_done(self._log, message.index, item)]

    # ------------------------------------------------------------------------------- function calls

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        index, upstream_id, function = tool_call_delta(call)
        name = string(function.get("name"))
        events: list[Event] = []
        open_call = self._call
        if open_call is None or self._starts_a_call(open_call, index, upstream_id):
            if index is not None and index in self._closed_calls and upstream_id in (None, self._closed_calls[index]):
                # A closed item cannot be reopened, and holding every call open would keep what this class does not.
                raise UpstreamStreamError("the upstream interleaved the arguments of parallel tool calls")
            events.extend(self._close_message() if self._message is not None else self._close_call())
            call_id = unique_call_id(upstream_id, self._call_ids)
            open_call = self._call = _Call(new_call_item_id(), len(self._output), call_id, name, index, upstream_id)
            item = call_item(open_call.id, call_id, name, "", "in_progress")
            events.append(item_added(self._log, open_call.index, item))
        elif name and not open_call.name:
            open_call.name = name  # a server that names the call after opening it
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            open_call.pieces.append(arguments)
            events.append(arguments_delta(self._log, open_call.id, open_call.index, arguments))
        return events

    @staticmethod
    def _starts_a_call(call: _Call, index: int | None, upstream_id: str | None) -> bool:
        # OpenAI numbers calls; some servers send every call as index 0, each with its own id.
        if index is not None and index != call.chat_index:
            return True
        return upstream_id is not None and call.upstream_id is not None and upstream_id != call.upstream_id

    def _close_call(self, status: str = "completed") -> list[Event]:
        call = self._call
        if call is None:
            return []
        item = call_item(call.id, call.call_id, call.name, "".join(call.pieces), status)
        self._output.append(item)
        if call.chat_index is not None:
            self._closed_calls[call.chat_index] = call.upstream_id
        self._call = None
        return call_done(self._log, call.index, item)

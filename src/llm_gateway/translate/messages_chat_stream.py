"""OpenAI ``chat.completion.chunk`` objects -> Anthropic Messages stream events, one chunk at a time.

Pure and synchronous, and linear: it keeps only the open content block and the stream's totals, never
the chunks seen. The sequence is Anthropic's: ``message_start``; per block ``content_block_start``,
its deltas, ``content_block_stop``; then ``message_delta`` and ``message_stop``. OpenAI sends usage in a
choice-less chunk after the finish reason, so ``message_delta`` waits for it (or for ``finish()``).
"""

from __future__ import annotations

from typing import Any, Literal

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.schemas.core import Usage
from llm_gateway.translate.chat_wire import first_choice, tool_call_delta
from llm_gateway.translate.messages_chat_answer import (
    anthropic_usage,
    input_usage,
    message_id,
    stop_reason,
    tool_use_id,
)

Event = tuple[str, dict[str, Any]]
BlockKind = Literal["text", "thinking", "tool_use"]


def _event(name: str, **data: Any) -> Event:
    return name, {"type": name, **data}


class ChatToMessagesStream:
    """OpenAI chat.completion.chunk dicts -> Anthropic stream events, one chunk at a time."""

    def __init__(self, *, model: str) -> None:
        self._model = model
        self._started = False  # message_start sent
        self._finished = False  # message_stop sent
        self._block: BlockKind | None = None  # the open content block
        self._index = -1  # the open (or last) block's index
        self._call_index: int | None = None  # OpenAI's index of the tool call in the open tool_use block
        self._call_id: str | None = None  # and its id as the upstream sent it
        self._highest_call_index = -1
        self._tool_use = False  # a tool_use block was sent
        self._refused = False  # the upstream sent a refusal
        self._finish_reason: str | None = None
        self._usage: Usage | None = None

    @property
    def finished(self) -> bool:
        """Whether ``message_stop`` went out; afterwards every chunk is ignored."""
        return self._finished

    @property
    def usage(self) -> Usage | None:
        """The upstream's usage, once a chunk carried it (prompt_tokens = input, completion_tokens = output)."""
        return self._usage

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """One upstream chunk -> zero or more ``(event name, data)``; nothing for an empty delta."""
        if self._finished or not isinstance(chunk, dict):
            return []
        usage = Usage.from_openai(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        events = [] if self._started else [self._message_start(chunk.get("id"))]
        choice = first_choice(chunk)
        if choice is None:
            # OpenAI's usage chunk, after the finish reason: the answer is complete.
            if usage is not None and self._finish_reason is not None:
                events.extend(self._closing())
            return events
        delta = choice.get("delta")
        if isinstance(delta, dict):
            events.extend(self._delta(delta))
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish and self._finish_reason is None:
            self._finish_reason = finish
            events.extend(self._close_block())  # its stop goes out now; message_delta waits for usage
        return events

    def finish(self) -> list[Event]:
        """The closing events once the upstream ended whole (also when it sent no usage or no finish reason)."""
        if self._finished:
            return []
        events = [] if self._started else [self._message_start(None)]
        return [*events, *self._closing()]

    # ------------------------------------------------------------------------------- the message

    def _message_start(self, completion_id: Any) -> Event:
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(completion_id),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # OpenAI counts tokens only at the end; message_delta carries them all (the SDK takes them from there).
            "usage": {**input_usage(self._usage), "output_tokens": 0},
        }
        return _event("message_start", message=message)

    def _closing(self) -> list[Event]:
        events = self._close_block()
        reason = stop_reason(self._finish_reason, has_tool_use=self._tool_use, refused=self._refused)
        usage = anthropic_usage(self._usage) if self._usage is not None else {"output_tokens": 0}
        events.append(_event("message_delta", delta={"stop_reason": reason, "stop_sequence": None}, usage=usage))
        events.append(_event("message_stop"))
        self._finished = True
        return events

    # ------------------------------------------------------------------------------- the blocks

    def _delta(self, delta: dict[str, Any]) -> list[Event]:
        events: list[Event] = []  # reasoning is not relayed (unsigned thinking: see chat_to_message)
        for name in ("content", "refusal"):
            text = delta.get(name)
            if isinstance(text, str) and text:
                self._refused = self._refused or name == "refusal"
                events.extend(self._open("text", {"type": "text", "text": ""}))
                events.append(self._block_delta({"type": "text_delta", "text": text}))
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    events.extend(self._tool_call(call))
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        index, call_id, function = tool_call_delta(call)
        events: list[Event] = []
        if self._starts_a_call(index, call_id):
            if index is not None and index < self._highest_call_index:
                # Anthropic blocks cannot be reopened, and buffering would keep what this class does not keep.
                raise UpstreamStreamError("the upstream interleaved the arguments of parallel tool calls")
            name = function.get("name")
            block = {"type": "tool_use", "id": tool_use_id(call_id), "name": name if isinstance(name, str) else ""}
            events.extend(self._open("tool_use", {**block, "input": {}}, new=True))
            self._call_index, self._call_id, self._tool_use = index, call_id, True
            self._highest_call_index = max(self._highest_call_index, index if index is not None else -1)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(self._block_delta({"type": "input_json_delta", "partial_json": arguments}))
        return events

    def _starts_a_call(self, index: int | None, call_id: str | None) -> bool:
        if self._block != "tool_use":
            return True
        # OpenAI numbers calls; some servers send every call as index 0 with its own id.
        return (index is not None and index != self._call_index) or (call_id is not None and call_id != self._call_id)

    def _open(self, kind: BlockKind, block: dict[str, Any], *, new: bool = False) -> list[Event]:
        if self._block == kind and not new:
            return []
        events = self._close_block()
        self._block = kind
        self._index += 1
        events.append(_event("content_block_start", index=self._index, content_block=block))
        return events

    def _block_delta(self, delta: dict[str, Any]) -> Event:
        return _event("content_block_delta", index=self._index, delta=delta)

    def _close_block(self) -> list[Event]:
        if self._block is None:
            return []
        self._block = None
        self._call_index = self._call_id = None
        return [_event("content_block_stop", index=self._index)]

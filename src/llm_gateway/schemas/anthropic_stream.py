"""Pure helpers over Anthropic ``message`` objects and their stream events (framed by ``sse_frames``): a stream
assembled into the message (for the cache), a stored message replayed as events, usage and text.

Everything here is linear in the size of the answer: streamed pieces are kept as lists and joined
once. The answer's size is bounded by the caller (``MAX_RESPONSE_BYTES``), not here.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.schemas.core import Usage
from llm_gateway.schemas.sse_frames import frame

# The zero usage of a stream whose message_start never came (the message then is not complete either).
_NO_USAGE = {"input_tokens": 0, "output_tokens": 0}


def _tokens(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def message_usage(usage: Any) -> Usage | None:
    """Anthropic's ``usage`` -> the gateway's: the prompt is every input token, fresh, written to the
    cache and read from it; ``cached`` the cache reads. None when absent or not an object."""
    if not isinstance(usage, dict):
        return None
    cached = _tokens(usage, "cache_read_input_tokens")
    prompt = _tokens(usage, "input_tokens") + _tokens(usage, "cache_creation_input_tokens") + cached
    return Usage(prompt_tokens=prompt, completion_tokens=_tokens(usage, "output_tokens"), cached_tokens=cached)


def _is_tool_call(block: dict[str, Any]) -> bool:
    """tool_use, server_tool_use, mcp_tool_use: blocks whose ``input`` streams as ``input_json_delta``."""
    kind = block.get("type")
    return isinstance(kind, str) and kind.endswith("tool_use")


def _content(message: Any) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


def message_text(message: dict[str, Any]) -> str:
    """What the model generated, for counting completion tokens when no usage came: text, thinking, and
    each tool call's name and input JSON. (Redacted thinking is opaque data, not tokens.)"""
    parts: list[str] = []
    for block in _content(message):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            parts.append(block["thinking"])
        elif _is_tool_call(block):
            parts.append(str(block.get("name") or "") + orjson.dumps(block.get("input")).decode())
    return "".join(parts)


def stop_reasons(message: dict[str, Any]) -> tuple[str, ...]:
    """``(stop_reason,)``, or () while there is none (a stream cut short)."""
    reason = message.get("stop_reason") if isinstance(message, dict) else None
    return (reason,) if isinstance(reason, str) and reason else ()


def is_complete_message(message: dict[str, Any]) -> bool:
    """A whole answer: a ``message`` with its content list and a stop reason. Only those are cached."""
    return (
        isinstance(message, dict)
        and message.get("type") == "message"
        and isinstance(message.get("content"), list)
        and bool(stop_reasons(message))
    )


class MessageAssembly:
    """The events of one stream -> the ``message`` they describe, as the Anthropic SDK accumulates it.

    Text, thinking and tool input JSON are kept as pieces and joined when ``result`` is asked for; tool
    input that does not parse as a JSON object becomes ``{}``. Unknown events and deltas are ignored.
    """

    __slots__ = ("_blocks", "_json", "_message", "_pieces")

    def __init__(self) -> None:
        self._message: dict[str, Any] = {
            "id": "", "type": "message", "role": "assistant", "model": "", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": dict(_NO_USAGE),
        }  # fmt: skip
        self._blocks: list[dict[str, Any]] = self._message["content"]
        # block position -> (field, pieces): "text", "thinking" or "input" (JSON text) still to join
        self._pieces: dict[int, tuple[str, list[str]]] = {}
        self._json: set[int] = set()  # positions whose "input" pieces must be parsed

    def feed(self, event: str, data: dict[str, Any]) -> None:
        """One event's parsed data (``event`` may be empty: ``data["type"]`` names it then)."""
        if not isinstance(data, dict):
            return
        kind = event or data.get("type")
        if kind == "content_block_delta":
            self._delta(data.get("index"), data.get("delta"))
        elif kind == "content_block_start":
            self._start(data.get("content_block"))
        elif kind == "message_start":
            self._message_start(data.get("message"))
        elif kind == "message_delta":
            self._message_delta(data.get("delta"), data.get("usage"))

    def _message_start(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        self._message = {**message, "content": [dict(b) for b in _content(message)]}
        self._message["usage"] = dict(message["usage"]) if isinstance(message.get("usage"), dict) else dict(_NO_USAGE)
        self._blocks = self._message["content"]
        self._pieces.clear()
        self._json.clear()

    def _start(self, block: Any) -> None:
        if not isinstance(block, dict):
            return
        block = dict(block)
        position = len(self._blocks)
        self._blocks.append(block)
        kind = block.get("type")
        if kind == "text" or kind == "thinking":
            start = block.get(kind)
            self._pieces[position] = (kind, [start] if isinstance(start, str) else [])
        elif _is_tool_call(block):
            self._pieces[position] = ("input", [])
            self._json.add(position)

    def _delta(self, index: Any, delta: Any) -> None:
        if not isinstance(index, int) or not 0 <= index < len(self._blocks) or not isinstance(delta, dict):
            return
        block = self._blocks[index]
        kind, pieces = self._pieces.get(index, ("", []))
        match delta.get("type"):
            case "text_delta" if kind == "text" and isinstance(delta.get("text"), str):
                pieces.append(delta["text"])
            case "thinking_delta" if kind == "thinking" and isinstance(delta.get("thinking"), str):
                pieces.append(delta["thinking"])
            case "input_json_delta" if kind == "input" and isinstance(delta.get("partial_json"), str):
                pieces.append(delta["partial_json"])
            case "signature_delta" if block.get("type") == "thinking":
                block["signature"] = delta.get("signature")
            case "citations_delta" if block.get("type") == "text":
                citations = block.get("citations")
                if isinstance(citations, list):
                    citations.append(delta.get("citation"))
                else:
                    block["citations"] = [delta.get("citation")]

    def _message_delta(self, delta: Any, usage: Any) -> None:
        if isinstance(delta, dict):
            # stop_reason and stop_sequence are the message_delta's to set, null included (as the SDK does);
            # a null among the others (stop_details, container) does not erase a value message_start gave.
            self._message["stop_reason"] = delta.get("stop_reason")
            self._message["stop_sequence"] = delta.get("stop_sequence")
            message = self._message
            message.update((k, v) for k, v in delta.items() if v is not None or message.get(k) is None)
        if isinstance(usage, dict):
            # Counts on a message_delta are cumulative totals: they replace, and absent ones keep their value.
            self._message["usage"].update((k, v) for k, v in usage.items() if v is not None)

    def result(self) -> dict[str, Any]:
        """The Anthropic ``message`` so far (a shallow copy; complete once the stream's message_delta came)."""
        for position, (field, pieces) in self._pieces.items():
            if field != "input":
                joined = "".join(pieces)
                pieces[:] = [joined]
                self._blocks[position][field] = joined
            elif pieces:
                joined = "".join(pieces)
                pieces[:] = [joined]
                if joined:
                    self._blocks[position]["input"] = _json_object(joined)
        return {**self._message, "content": [dict(block) for block in self._blocks]}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return frame(kind, orjson.dumps({"type": kind, **payload}))


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    """content_block_start, its deltas (each field in one piece), content_block_stop."""
    kind = block.get("type")
    deltas: list[dict[str, Any]] = []
    start = block
    if kind == "text":
        text, citations = block.get("text"), block.get("citations")
        start = {k: v for k, v in block.items() if k != "citations" or not (isinstance(v, list) and v)}
        start["text"] = ""
        if isinstance(citations, list) and citations:
            deltas += [{"type": "citations_delta", "citation": citation} for citation in citations]
        if isinstance(text, str) and text:
            deltas.append({"type": "text_delta", "text": text})
    elif kind == "thinking":
        thinking, signature = block.get("thinking"), block.get("signature")
        start = {**block, "thinking": "", "signature": ""}
        if isinstance(thinking, str) and thinking:
            deltas.append({"type": "thinking_delta", "thinking": thinking})
        if isinstance(signature, str) and signature:
            deltas.append({"type": "signature_delta", "signature": signature})
    elif _is_tool_call(block) and isinstance(block.get("input"), dict):
        start = {**block, "input": {}}
        if block["input"]:
            deltas.append({"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()})
    events = [_event("content_block_start", {"index": index, "content_block": start})]
    events += [_event("content_block_delta", {"index": index, "delta": delta}) for delta in deltas]
    events.append(_event("content_block_stop", {"index": index}))
    return events


def message_to_events(message: dict[str, Any]) -> list[bytes]:
    """A stored message replayed as the framed SSE events Anthropic would have streamed for it.

    ``message_start`` carries the message without content or stop reason (its usage with no output
    tokens yet); each block streams whole: text in one ``text_delta``, tool input as one
    ``input_json_delta``, thinking as one ``thinking_delta`` and one ``signature_delta``; blocks that
    Anthropic sends whole (redacted thinking, server tool results) arrive in their content_block_start.
    ``message_delta`` carries the stop reason and the full usage. Fed to ``MessageAssembly``, these give
    ``message`` back.
    """
    usage = message.get("usage")
    usage = usage if isinstance(usage, dict) else dict(_NO_USAGE)
    start = {k: v for k, v in message.items() if k not in ("content", "stop_reason", "stop_sequence")}
    start.update(content=[], stop_reason=None, stop_sequence=None, usage={**usage, "output_tokens": 0})
    for field in ("stop_details", "container"):  # message_delta fields: they come there
        start.pop(field, None)
    events = [_event("message_start", {"message": start})]
    for index, block in enumerate(_content(message)):
        events += _block_events(index, block)
    delta = {"stop_reason": message.get("stop_reason"), "stop_sequence": message.get("stop_sequence")}
    delta.update({field: message[field] for field in ("stop_details", "container") if field in message})
    events.append(_event("message_delta", {"delta": delta, "usage": usage}))
    events.append(_event("message_stop", {}))
    return events

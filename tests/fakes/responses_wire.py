"""OpenAI's Responses API (``POST /v1/responses``) as the fake OpenAI speaks it.

Shapes follow the public API reference and the official SDK's types: the ``response`` object, and the typed
event stream in OpenAI's order (``response.created``, ``response.in_progress``, per output item
``output_item.added`` ... ``output_item.done``, then ``response.completed`` or ``response.incomplete``), each
event named by an ``event:`` line and numbered by ``sequence_number``. A failure after the stream started is
``response.failed`` (what OpenAI sends once ``response.created`` is out), never a chat-style ``data: {"error"}``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .behaviours import Reply
from .openai_wire import OpenAIWire, Problem
from .sse import StreamPlan, halves, named_event, plan, split_text

JSON = dict[str, Any]
# Reply's finish_reason -> an incomplete response's reason (any other finish completes it).
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"


def _json_type(value: Any) -> str:
    """How the real API names a JSON value's type in its "Invalid type" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), "a value")


def _hex_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ResponsesWire(OpenAIWire):
    """The Responses side of the fake OpenAI: request checks, ``response`` objects, event streams, and the
    responses it created (unless ``store: false``), so ``previous_response_id`` is checked like the real API."""

    def __init__(self, api_key: str) -> None:
        super().__init__("openai", api_key)
        self.path = "/v1/responses"
        self._stored: dict[str, JSON] = {}
        self._lock = threading.Lock()

    def stored(self) -> dict[str, JSON]:
        with self._lock:
            return dict(self._stored)

    def forget(self) -> None:
        with self._lock:
            self._stored.clear()

    # -- request checks -----------------------------------------------------------------------

    def check_request(self, body: Any, headers: Mapping[str, str]) -> Problem | None:
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."
            return 400, self._error(400, message)
        if "model" not in body:
            return self._invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        if not isinstance(body["model"], str):
            return self._invalid_type("model", "a string", body["model"])
        if "input" not in body and "prompt" not in body:
            return self._invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
        raw_input = body.get("input")
        if "input" in body and not isinstance(raw_input, str | list):
            return self._invalid_type("input", "one of a string or array of input items", raw_input)
        for index, item in enumerate(raw_input if isinstance(raw_input, list) else []):
            if not isinstance(item, dict):
                return self._invalid_type(f"input[{index}]", "an input item object", item)
        if body.get("stream") is not None and not isinstance(body["stream"], bool):
            return self._invalid_type("stream", "a boolean", body["stream"])
        previous = body.get("previous_response_id")
        if previous is not None:
            if not isinstance(previous, str):
                return self._invalid_type("previous_response_id", "a string", previous)
            with self._lock:
                known = previous in self._stored
            if not known:
                message = f"Previous response with id '{previous}' not found."
                return self._invalid(message, "previous_response_id", "previous_response_not_found")
        return None

    def _invalid(self, message: str, param: str, code: str) -> Problem:
        return 400, self._error(400, message, param=param, code=code)

    def _invalid_type(self, param: str, expected: str, value: Any) -> Problem:
        message = f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead."
        return self._invalid(message, param, "invalid_type")

    # -- answers ------------------------------------------------------------------------------

    def completion(self, request: JSON, reply: Reply) -> JSON:
        """The ``response`` object for a validated request (kept unless ``store`` is false)."""
        return self._keep(request, self._finished(request, reply, self._skeleton(request)))

    def stream(self, request: JSON, reply: Reply) -> StreamPlan:
        skeleton = self._skeleton(request)
        final = self._keep(request, self._finished(request, reply, skeleton))
        events: list[tuple[JSON, bool]] = [
            ({"type": "response.created", "response": skeleton}, False),
            ({"type": "response.in_progress", "response": skeleton}, False),
        ]
        for index, item in enumerate(final["output"]):
            events += _item_events(index, item, reply)
        terminal = "response.completed" if final["status"] == "completed" else "response.incomplete"
        events.append(({"type": terminal, "response": final}, False))
        numbered = [({**event, "sequence_number": n}, content) for n, (event, content) in enumerate(events)]

        def failed(sequence: int, message: str | None, error_type: str | None) -> bytes:
            error = {"code": error_type or "server_error", "message": message or _SERVER_ERROR}
            response = {**skeleton, "status": "failed", "error": error}
            return named_event("response.failed", {"type": "response.failed", "response": response,
                                                   "sequence_number": sequence})  # fmt: skip

        stream_plan = plan([(named_event(event["type"], event), content) for event, content in numbered])
        return StreamPlan(stream_plan.head, stream_plan.chunks, stream_plan.tail, failure=failed)

    def _skeleton(self, request: JSON) -> JSON:
        """The response as ``response.created`` shows it: in progress, no output, no usage."""
        return {
            "id": _hex_id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "max_tool_calls": request.get("max_tool_calls"),
            "model": request["model"],
            "output": [],
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": request.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": request.get("store", True),
            "temperature": request.get("temperature", 1.0),
            "text": request.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": request.get("tools", []),
            "top_logprobs": request.get("top_logprobs", 0),
            "top_p": request.get("top_p", 1.0),
            "truncation": request.get("truncation", "disabled"),
            "usage": None,
            "user": request.get("user"),
            "metadata": request.get("metadata") or {},
        }

    def _finished(self, request: JSON, reply: Reply, skeleton: JSON) -> JSON:
        reason = _INCOMPLETE.get(reply.finish())
        item_status = "incomplete" if reason else "completed"
        output: list[JSON] = []
        text = reply.text(self.kind)
        if text is not None:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            output.append({"id": _hex_id("msg"), "type": "message", "status": item_status, "role": "assistant",
                           "content": [part]})  # fmt: skip
        for call in reply.tool_calls or []:
            function = call.get("function", {})
            output.append({"id": _hex_id("fc"), "type": "function_call", "status": "completed",
                           "arguments": function.get("arguments", ""), "call_id": call.get("id"),
                           "name": function.get("name")})  # fmt: skip
        usage = {
            "input_tokens": reply.prompt_tokens,
            "input_tokens_details": {"cached_tokens": reply.cache_read_tokens, "cache_write_tokens": 0},
            "output_tokens": reply.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        return {
            **skeleton,
            "status": "incomplete" if reason else "completed",
            "incomplete_details": {"reason": reason} if reason else None,
            "output": output,
            "usage": usage,
        }

    def _keep(self, request: JSON, response: JSON) -> JSON:
        if request.get("store") is not False:
            with self._lock:
                self._stored[response["id"]] = response
        return response


def _item_events(index: int, item: JSON, reply: Reply) -> list[tuple[JSON, bool]]:
    """One output item's events, from ``output_item.added`` to ``output_item.done``; deltas carry content."""
    where = {"output_index": index}
    if item["type"] == "function_call":
        at = {"item_id": item["id"], **where}
        opened = {**item, "status": "in_progress", "arguments": ""}
        events = [({"type": "response.output_item.added", **where, "item": opened}, False)]
        for piece in halves(item["arguments"]):
            events.append(({"type": "response.function_call_arguments.delta", **at, "delta": piece}, True))
        events.append(({"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]}, False))
        return [*events, ({"type": "response.output_item.done", **where, "item": item}, False)]
    part = item["content"][0]
    at = {"item_id": item["id"], **where, "content_index": 0}
    opened = {**item, "status": "in_progress", "content": []}
    events = [
        ({"type": "response.output_item.added", **where, "item": opened}, False),
        ({"type": "response.content_part.added", **at, "part": {**part, "text": ""}}, False),
    ]
    for piece in split_text(part["text"], reply.chunks):
        events.append(({"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}, True))
    events += [
        ({"type": "response.output_text.done", **at, "text": part["text"], "logprobs": []}, False),
        ({"type": "response.content_part.done", **at, "part": part}, False),
        ({"type": "response.output_item.done", **where, "item": item}, False),
    ]
    return events

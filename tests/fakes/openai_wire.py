"""OpenAI Chat Completions wire format (Groq serves the same under ``/openai/v1``), as the fakes speak it.

Shapes follow the public API reference: ``chat.completion``, ``chat.completion.chunk`` events ending in
``data: [DONE]``, the usage chunk with ``choices: []``, and the ``{"error": {...}}`` envelope.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from .behaviours import Reply
from .sse import StreamPlan, data_event, halves, plan, split_text

JSON = dict[str, Any]
Problem = tuple[int, JSON]

_DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to access this resource.",
    404: "The model does not exist or you do not have access to it.",
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The server is overloaded or not ready yet.",
}
_DEFAULT_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_MODELS = {
    "openai": ["gpt-4o-mini", "gpt-4o"],
    "groq": ["llama-3.1-8b-instant", "llama-3.3-70b-versatile"],
}


def _default_type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


class OpenAIWire:
    """The OpenAI (or Groq) side of a fake: request checks, success bodies, streams and errors."""

    request_id_header = "x-request-id"
    stream_error_status = 500

    def __init__(self, kind: str, api_key: str) -> None:
        self.kind = kind
        self.api_key = api_key
        prefix = "/openai/v1" if kind == "groq" else "/v1"
        self.chat_path = f"{prefix}/chat/completions"
        self.models_path = f"{prefix}/models"

    # -- errors -------------------------------------------------------------------------------

    def error(
        self, status: int, message: str | None = None, error_type: str | None = None, code: str | None = None
    ) -> JSON:
        """The envelope for a scripted failure; unset fields take what the real API sends for ``status``."""
        return self._error(status, message, error_type=error_type, code=code or _DEFAULT_CODES.get(status))

    def _error(
        self,
        status: int,
        message: str | None,
        *,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> JSON:
        return {
            "error": {
                "message": message or _DEFAULT_MESSAGES.get(status, f"Upstream error {status}."),
                "type": error_type or _default_type(status),
                "param": param,
                "code": code,
            }
        }

    def stream_error(self, message: str | None, error_type: str | None) -> bytes:
        return data_event(self._error(500, message, error_type=error_type))

    def not_found(self, method: str, path: str) -> Problem:
        return 404, self._error(404, f"Invalid URL ({method} {path})")

    # -- request checks -----------------------------------------------------------------------

    def check_auth(self, headers: Mapping[str, str]) -> Problem | None:
        authorization = headers.get("authorization", "")
        if not authorization:
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return 401, self._error(401, message)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.api_key:
            shown = token[:3] + "*" * 3 + token[-4:] if len(token) > 8 else "***"
            return 401, self._error(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")
        return None

    def check_request(self, body: Any, headers: Mapping[str, str]) -> Problem | None:
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."
            return 400, self._error(400, message)
        if not body.get("model"):
            return 400, self._error(400, "you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, self._error(
                400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
            )
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in _ROLES:
                supported = ", ".join(f"'{r}'" for r in _ROLES)
                return 400, self._error(
                    400,
                    f"Invalid value: '{role}'. Supported values are: {supported}.",
                    param=f"messages[{i}].role",
                    code="invalid_value",
                )
        if body.get("stream_options") is not None and body.get("stream") is not True:
            message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            return 400, self._error(400, message, param="stream_options")
        return None

    # -- answers ------------------------------------------------------------------------------

    def models(self) -> JSON:
        owner = "openai" if self.kind == "openai" else "Meta"
        data = [{"id": m, "object": "model", "created": 1715367049, "owned_by": owner} for m in _MODELS[self.kind]]
        return {"object": "list", "data": data}

    def _usage(self, reply: Reply) -> JSON:
        usage: JSON = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        if self.kind == "groq":
            usage.update(queue_time=0.01, prompt_time=0.002, completion_time=0.004, total_time=0.006)
        else:
            usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
        return usage

    def _envelope(self, request: JSON, obj: str, completion_id: str) -> JSON:
        return {
            "id": completion_id,
            "object": obj,
            "created": int(time.time()),
            "model": request.get("model"),
            "system_fingerprint": "fp_fake0001",
        }

    def completion(self, request: JSON, reply: Reply) -> JSON:
        message: JSON = {"role": "assistant", "content": reply.text(self.kind), "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = reply.tool_calls
        body = self._envelope(request, "chat.completion", f"chatcmpl-{uuid.uuid4().hex[:24]}")
        body["choices"] = [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish()}]
        body["usage"] = self._usage(reply)
        if self.kind == "groq":
            body["x_groq"] = {"id": f"req_{uuid.uuid4().hex[:26]}"}
        return body

    def stream(self, request: JSON, reply: Reply) -> StreamPlan:
        options = request.get("stream_options") or {}
        include_usage = reply.include_usage if reply.include_usage is not None else options.get("include_usage") is True
        base = self._envelope(request, "chat.completion.chunk", f"chatcmpl-{uuid.uuid4().hex[:24]}")
        if include_usage:
            base["usage"] = None

        def chunk(delta: JSON, finish_reason: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return data_event({**base, "choices": [choice], **extra})

        text = reply.text(self.kind)
        events = [(chunk({"role": "assistant", "content": "" if text is not None else None, "refusal": None}), False)]
        events += [(chunk({"content": piece}), True) for piece in split_text(text or "", reply.chunks)]
        for index, call in enumerate(reply.tool_calls or []):
            function = call.get("function", {})
            header = {"index": index, "id": call.get("id"), "type": call.get("type", "function")}
            header["function"] = {"name": function.get("name"), "arguments": ""}
            events.append((chunk({"tool_calls": [header]}), True))
            for piece in halves(function.get("arguments", "")):
                events.append((chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}), True))
        extra = (
            {"x_groq": {"id": f"req_{uuid.uuid4().hex[:26]}", "usage": self._usage(reply)}}
            if self.kind == "groq"
            else {}
        )
        events.append((chunk({}, reply.finish(), **extra), False))
        if include_usage:
            events.append((data_event({**base, "choices": [], "usage": self._usage(reply)}), False))
        events.append((data_event("[DONE]"), False))
        return plan(events)

"""OpenAI Chat Completions and Embeddings wire format (Groq serves the same under ``/openai/v1``), as the fakes
speak it.

Shapes follow the public API reference: ``chat.completion``, ``chat.completion.chunk`` events ending in
``data: [DONE]``, the usage chunk with ``choices: []``, the embeddings ``list`` (float arrays, or base64 of
little-endian float32 when ``encoding_format`` is ``base64``), and the ``{"error": {...}}`` envelope.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
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
# Embeddings: the real API's limits and defaults.
EMBEDDING_DIMENSIONS = 1536  # text-embedding-3-small's and ada-002's; the fake answers it unless ``dimensions`` is set
MAX_EMBEDDING_INPUTS = 2048
_NO_DIMENSIONS_MODELS = ("text-embedding-ada-002",)  # the real API refuses ``dimensions`` for these
_MODELS = {
    "openai": ["gpt-4o-mini", "gpt-4o"],
    "groq": ["llama-3.1-8b-instant", "llama-3.3-70b-versatile"],
}


EmbeddingInput = str | list[int]


def fake_embedding(item: EmbeddingInput, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The vector the fake answers for one input (a string or a token array): deterministic, unit length,
    float32 values (as the real API sends them), so a test can compute what an answer must carry.

    Seeded by the SHA-256 of the input's compact JSON (``"text"`` or ``[1,2,3]``, so a string never collides
    with a token array); a different ``dimensions`` gives a different vector, as shortening does for real.
    """
    seed = hashlib.sha256(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()).digest()
    rng = random.Random(int.from_bytes(seed, "big") ^ dimensions)
    values = [rng.random() * 2 - 1 for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values))))


def embedding_base64(vector: list[float]) -> str:
    """``encoding_format: "base64"``: the base64 of the little-endian float32 array, as the real API sends it."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_inputs(raw: Any) -> list[EmbeddingInput]:
    """A request's ``input`` as a list of items (a string, strings, a token array, token arrays)."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
        return [raw]
    return list(raw) if isinstance(raw, list) else []


def embedding_tokens(item: EmbeddingInput) -> int:
    """What the fake charges for one input: ``len(text) // 4 + 1`` for a string, the length of a token array."""
    return len(item) // 4 + 1 if isinstance(item, str) else len(item)


def _default_type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


class OpenAIWire:
    """The OpenAI (or Groq) side of a fake: request checks, success bodies, streams and errors."""

    request_id_header = "x-request-id"
    stream_error_status = 500

    def __init__(self, kind: str, api_key: str, *, prefix: str | None = None, refuses: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.api_key = api_key
        self.refuses = refuses  # fields a stricter OpenAI-compatible server refuses (422), as Mistral does
        if prefix is None:
            prefix = "/openai/v1" if kind == "groq" else "/v1"
        self.chat_path = f"{prefix}/chat/completions"
        self.models_path = f"{prefix}/models"
        self.embeddings_path = f"{prefix}/embeddings"

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
        for name in self.refuses:
            if name in body:
                return 422, self._error(
                    422, f"Extra inputs are not permitted: {name}", param=name, code="extra_forbidden"
                )
        if body.get("stream_options") is not None and body.get("stream") is not True:
            message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            return 400, self._error(400, message, param="stream_options")
        return None

    def check_embeddings(self, body: Any) -> Problem | None:
        """The real API's refusals of an embeddings request (a refused request consumes no behaviour)."""
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."
            return 400, self._error(400, message)
        if not body.get("model"):
            return 400, self._error(400, "you must provide a model parameter")
        if "input" not in body:
            return 400, self._error(
                400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
            )
        raw = body["input"]
        items = embedding_inputs(raw)
        valid = 0 < len(items) <= MAX_EMBEDDING_INPUTS
        for item in items:
            if isinstance(item, str):
                valid = valid and item != ""
            else:
                valid = valid and isinstance(item, list) and bool(item)
                valid = valid and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item)
        if not valid:
            message = (
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
            )
            return 400, self._error(400, message)
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return 400, self._error(
                400,
                f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )
        dimensions = body.get("dimensions")
        if dimensions is not None:
            if str(body["model"]) in _NO_DIMENSIONS_MODELS:
                return 400, self._error(400, "This model does not support specifying dimensions.", param="dimensions")
            if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
                return 400, self._error(
                    400,
                    f"Invalid value for 'dimensions' = {dimensions}. Must be at least 1.",
                    param="dimensions",
                    code="invalid_value",
                )
        return None

    # -- answers ------------------------------------------------------------------------------

    def embeddings(self, request: JSON) -> JSON:
        """OpenAI's ``list`` of embeddings for a validated request: one ``fake_embedding`` per input, in order."""
        items = embedding_inputs(request.get("input"))
        dimensions = request.get("dimensions") or EMBEDDING_DIMENSIONS
        as_base64 = request.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(items):
            vector = fake_embedding(item, dimensions)
            embedding: list[float] | str = embedding_base64(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(embedding_tokens(item) for item in items)
        return {
            "object": "list",
            "data": data,
            "model": request.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

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

"""Google's Gemini API (``kind="gemini"``) and Vertex AI (``kind="vertex"``) wire format, as the fakes speak it.

Gemini: ``POST /v1beta/models/{model}:generateContent`` / ``:streamGenerateContent?alt=sse`` /
``:batchEmbedContents`` keyed by ``x-goog-api-key`` (a wrong key is Google's 400 ``INVALID_ARGUMENT`` with reason
``API_KEY_INVALID``). Vertex AI: the same bodies under ``/v1/projects/{p}/locations/{l}/publishers/google/models/
{model}:…`` (``:predict`` for embeddings) with a bearer token that its own OAuth endpoint (``google_token.py``)
issued and that has not expired. Bodies are checked as the real API checks them (roles, parts, a function response
needs a name and must answer as many calls as the turn before made...). Errors are ``{"error": {"code",
"message", "status", "details"}}``; ``Fail(status, error_type=STATUS, code=REASON)`` sets the status name and an
``ErrorInfo`` reason. ``Reply(finish_reason="content_filter")`` answers a ``SAFETY`` stop with no content;
``PROMPT_BLOCKED`` a prompt blocked before any candidate (``promptFeedback.blockReason``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from .behaviours import Reply
from .gemini_checks import embed_problem, predict_problem, request_problem
from .google_token import TokenServer
from .openai_wire import embedding_tokens, fake_embedding
from .sse import StreamPlan, data_event, plan, split_text

JSON = dict[str, Any]
Problem = tuple[int, JSON]

GEMINI_EMBEDDING_DIMENSIONS = 768  # what the fake answers without outputDimensionality
PROMPT_BLOCKED = Reply(finish_reason="prompt_blocked")  # promptFeedback.blockReason SAFETY, no candidates
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/"
    "troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY", "tool_calls": "STOP"}
_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
]


def thought_signature(text: str) -> str:
    """A stand-in for Gemini's opaque signature (base64), deterministic per thought."""
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


class GeminiWire:
    """The Google side of a fake: routes, auth, request checks, answers, streams and errors."""

    request_id_header = "x-request-id"
    stream_error_status = 503

    def __init__(self, kind: str, api_key: str) -> None:
        self.kind = kind
        self.api_key = api_key
        self.project, self.location = "test-project", "us-central1"
        if kind == "vertex":
            self.prefix = f"/v1/projects/{self.project}/locations/{self.location}/publishers/google/models"
            self.tokens: TokenServer | None = TokenServer()
        else:
            self.prefix = "/v1beta/models"
            self.tokens = None
        self.chat_path = f"{self.prefix}/{{model}}:generateContent"
        self.chat_routes = (self.chat_path, f"{self.prefix}/{{model}}:streamGenerateContent")
        self.embed_method = "predict" if kind == "vertex" else "batchEmbedContents"
        self.embeddings_routes = (f"{self.prefix}/{{model}}:{self.embed_method}",)
        self.models_path = self.prefix

    @property
    def extra_routes(self) -> tuple[tuple[str, str, Any], ...]:
        return (("POST", self.tokens.path, self.tokens.handle),) if self.tokens else ()

    def is_chat(self, path: str) -> bool:
        return path.startswith(self.prefix) and path.endswith((":generateContent", ":streamGenerateContent"))

    def is_embeddings(self, path: str) -> bool:
        return path.startswith(self.prefix) and path.endswith(f":{self.embed_method}")

    def request_view(self, method: str, path: str, query: Mapping[str, str], body: JSON) -> JSON:
        """The model and ``stream`` come from the URL; ``_alt`` keeps the ``alt`` query for the checks."""
        model = path[len(self.prefix) + 1 :].rpartition(":")[0]
        stream = path.endswith(":streamGenerateContent")
        return {**body, "_model": model, "stream": stream, "_alt": query.get("alt")}

    # -- errors -------------------------------------------------------------------------------

    def error(
        self, status: int, message: str | None = None, error_type: str | None = None, code: str | None = None
    ) -> JSON:
        """``error_type``: Google's status name (default per HTTP status); ``code``: an ``ErrorInfo`` reason."""
        body: JSON = {
            "code": status,
            "message": message or _MESSAGES.get(status, f"Upstream error {status}."),
            "status": error_type or STATUS_NAMES.get(status, "UNKNOWN"),
        }
        if code:
            body["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": code,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ]
        return {"error": body}

    def stream_error(self, message: str | None, error_type: str | None) -> bytes:
        return data_event(self.error(503, message, error_type))

    def not_found(self, method: str, path: str) -> Problem:
        return 404, self.error(404, f"The requested URL {path} was not found on this server.")

    # -- auth ---------------------------------------------------------------------------------

    def check_auth(self, headers: Mapping[str, str]) -> Problem | None:
        if self.tokens is not None:
            return self._check_bearer(headers)
        key = headers.get("x-goog-api-key")
        if not key:
            message = (
                "Method doesn't allow unregistered callers (callers without established identity). Please use API "
                "Key or other form of API consumer identity to call this API."
            )
            return 403, self.error(403, message)
        if key != self.api_key:
            return 400, self.error(400, "API key not valid. Please pass a valid API key.", code="API_KEY_INVALID")
        return None

    def authenticate(self, method: str, path_qs: str, headers: Mapping[str, str], raw: bytes) -> Problem | None:
        return self.check_auth(headers)

    def _check_bearer(self, headers: Mapping[str, str]) -> Problem | None:
        assert self.tokens is not None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.tokens.valid(token.strip()):
            message = (
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
                "valid authentication credential."
            )
            return 401, self.error(401, message, code="ACCESS_TOKEN_EXPIRED" if token else "CREDENTIALS_MISSING")
        return None

    # -- request checks -----------------------------------------------------------------------

    def check_request(self, body: Any, headers: Mapping[str, str]) -> Problem | None:
        if not isinstance(body, dict):
            return 400, self.error(400, "Invalid JSON payload received.")
        if body.get("stream") and body.get("_alt") != "sse":
            return 400, self.error(400, "This fake serves streams only with alt=sse.")
        message = request_problem({k: v for k, v in body.items() if k not in ("_model", "stream", "_alt")})
        return (400, self.error(400, message)) if message else None

    def check_embeddings(self, body: Any) -> Problem | None:
        if not isinstance(body, dict):
            return 400, self.error(400, "Invalid JSON payload received.")
        model = str(body.get("_model"))
        core = {k: v for k, v in body.items() if k not in ("_model", "stream", "_alt")}
        message = predict_problem(core, model) if self.kind == "vertex" else embed_problem(core, model)
        return (400, self.error(400, message)) if message else None

    # -- answers ------------------------------------------------------------------------------

    def models(self) -> JSON:
        return {"models": [{"name": "models/gemini-2.5-flash"}, {"name": "models/gemini-embedding-001"}]}

    def embeddings(self, request: JSON) -> JSON:
        if self.kind == "vertex":
            size = (request.get("parameters") or {}).get("outputDimensionality") or GEMINI_EMBEDDING_DIMENSIONS
            predictions = [
                {
                    "embeddings": {
                        "values": fake_embedding(instance["content"], size),
                        "statistics": {"token_count": embedding_tokens(instance["content"]), "truncated": False},
                    }
                }
                for instance in request["instances"]
            ]
            return {"predictions": predictions, "metadata": {"billableCharacterCount": 1}}
        embeddings = []
        for item in request["requests"]:
            text = "".join(part["text"] for part in item["content"]["parts"])
            size = item.get("outputDimensionality") or GEMINI_EMBEDDING_DIMENSIONS
            embeddings.append({"values": fake_embedding(text, size)})
        return {"embeddings": embeddings}

    def completion(self, request: JSON, reply: Reply) -> JSON:
        if reply.finish_reason == "prompt_blocked":
            return self._blocked(reply)
        count = (request.get("generationConfig") or {}).get("candidateCount") or 1
        candidates = [self._candidate(reply, index, self._parts(reply)) for index in range(count)]
        return {**self._envelope(request), "candidates": candidates, "usageMetadata": self._usage(reply, final=True)}

    def stream(self, request: JSON, reply: Reply) -> StreamPlan:
        if reply.finish_reason == "prompt_blocked":
            return plan([(data_event(self._blocked(reply)), False)])
        count = (request.get("generationConfig") or {}).get("candidateCount") or 1
        envelope = self._envelope(request)

        def event(parts: list[JSON], *, final: bool) -> bytes:
            candidates = []
            for index in range(count):
                candidate: JSON = {"content": {"parts": parts, "role": "model"}, "index": index}
                if final:
                    candidate = self._candidate(reply, index, parts)
                candidates.append(candidate)
            return data_event({**envelope, "candidates": candidates, "usageMetadata": self._usage(reply, final=final)})

        events: list[tuple[bytes, bool]] = []
        if reply.thinking:
            events.append((event([{"text": reply.thinking, "thought": True}], final=False), False))
        text = reply.text(self.kind)
        events += [(event([{"text": piece}], final=False), True) for piece in split_text(text or "", reply.chunks)]
        calls = self._calls(reply)
        if calls:
            events.append((event(calls, final=False), True))
        final_parts = [] if reply.finish() == "content_filter" else [{"text": ""}]
        events.append((event(final_parts, final=True), False))
        return plan(events)

    def _envelope(self, request: JSON) -> JSON:
        return {"modelVersion": request.get("_model"), "responseId": uuid.uuid4().hex[:22]}

    def _blocked(self, reply: Reply) -> JSON:
        usage = {"promptTokenCount": reply.prompt_tokens, "totalTokenCount": reply.prompt_tokens}
        feedback = {"blockReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS}
        return {"promptFeedback": feedback, "usageMetadata": usage, "modelVersion": "gemini", "responseId": "blocked"}

    def _calls(self, reply: Reply) -> list[JSON]:
        parts: list[JSON] = []
        for i, call in enumerate(reply.tool_calls or []):
            function = call.get("function", {})
            arguments = json.loads(function.get("arguments") or "{}")
            part: JSON = {"functionCall": {"name": function.get("name"), "args": arguments}}
            if i == 0 and reply.thinking:
                part["thoughtSignature"] = thought_signature(reply.thinking)
            parts.append(part)
        return parts

    def _parts(self, reply: Reply) -> list[JSON]:
        if reply.finish() == "content_filter":
            return []
        parts: list[JSON] = [{"text": reply.thinking, "thought": True}] if reply.thinking else []
        text = reply.text(self.kind)
        parts += [{"text": text}] if text else []
        return parts + self._calls(reply)

    def _candidate(self, reply: Reply, index: int, parts: list[JSON]) -> JSON:
        finish = _FINISH.get(reply.finish(), reply.finish())
        candidate: JSON = {"finishReason": finish, "index": index}
        if parts or finish != "SAFETY":
            candidate = {"content": {"parts": parts, "role": "model"}, **candidate}
        if finish == "SAFETY":
            candidate["safetyRatings"] = _SAFETY_RATINGS
        return candidate

    def _usage(self, reply: Reply, *, final: bool) -> JSON:
        usage: JSON = {"promptTokenCount": reply.prompt_tokens}
        if final:
            usage["candidatesTokenCount"] = reply.completion_tokens
        thoughts = len(reply.thinking.split()) if reply.thinking and final else 0
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if reply.cache_read_tokens:
            usage["cachedContentTokenCount"] = reply.cache_read_tokens
        usage["totalTokenCount"] = reply.prompt_tokens + usage.get("candidatesTokenCount", 0) + thoughts
        return usage

"""Azure OpenAI's wire as the fake speaks it: OpenAI's bodies and streams (``OpenAIWire``) at Azure's URLs, with
Azure's credentials, content filter and error envelope.

- URLs: ``/openai/deployments/{deployment}/chat/completions|embeddings?api-version=V`` (a missing or unknown
  version: 404 ``Resource not found``; a deployment it does not have: 404 ``DeploymentNotFound``) and the v1 path
  ``/openai/v1/chat/completions|embeddings`` (``model`` in the body names the deployment).
- Credentials: ``api-key: <key>``, or ``Authorization: Bearer <token>`` with the Entra ID token
  ``entra_token(key)`` (on the v1 path the key itself is taken as a bearer too, as the openai SDK sends it).
- The content filter: a prompt containing ``FILTER_TRIGGER`` is refused with Azure's 400 ``content_filter`` and
  its ``innererror``; every answer carries ``prompt_filter_results`` and per-choice ``content_filter_results``, a
  stream's first chunk being the prompt's verdict with ``choices: []``, and a ``Reply(finish_reason=
  "content_filter")`` marks the answer's filter result ``filtered``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .behaviours import Reply
from .openai_wire import OpenAIWire, Problem
from .sse import StreamPlan, data_event

JSON = dict[str, Any]

API_VERSIONS = frozenset({"2024-02-01", "2024-06-01", "2024-10-21", "2025-01-01-preview", "2025-04-01-preview"})
V1_VERSIONS = frozenset({"v1", "preview", "latest"})  # what the v1 path takes as ``api-version``, when sent
DEPLOYMENTS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "chat-prod", "text-embedding-3-small", "text-embedding-3-large")
FILTER_TRIGGER = "forbidden-topic"
FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify "
    "your prompt and retry. To learn more about our content filtering policies please read our documentation: "
    "https://go.microsoft.com/fwlink/?linkid=2198766"
)
_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
_DEPLOYMENT_ROUTE = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
_MESSAGES = {
    401: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for "
    "an active subscription and use a correct regional API endpoint for your resource.",
    429: "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded "
    "token rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second.",
}
_TOKEN_REFUSED = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), "
    "or have expired."
)


def entra_token(api_key: str) -> str:
    """The Microsoft Entra ID access token the fake resource whose key is ``api_key`` accepts."""
    return f"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-entra.{api_key}"


def filter_results(*, filtered: str | None = None) -> JSON:
    """A content filter verdict as Azure writes it: every category ``safe``, or ``filtered`` one ``medium``."""
    results: JSON = {
        name: {"filtered": name == filtered, "severity": "medium" if name == filtered else "safe"}
        for name in _CATEGORIES
    }
    results["jailbreak"] = {"filtered": False, "detected": False}
    return results


def _prompt_texts(body: JSON) -> list[str]:
    texts = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return texts


class AzureWire(OpenAIWire):
    """The Azure side of a fake: one resource with ``DEPLOYMENTS``, taking both path styles."""

    request_id_header = "apim-request-id"
    chat_routes = ("/openai/deployments/{deployment}/chat/completions", "/openai/v1/chat/completions")
    embeddings_routes = ("/openai/deployments/{deployment}/embeddings", "/openai/v1/embeddings")

    def __init__(self, api_key: str) -> None:
        super().__init__("azure", api_key)
        self.chat_path = "/openai/v1/chat/completions"
        self.embeddings_path = "/openai/v1/embeddings"
        self.models_path = "/openai/v1/models"
        self.token = entra_token(api_key)

    # -- routes -------------------------------------------------------------------------------

    def is_chat(self, path: str) -> bool:
        return path.endswith("/chat/completions") and path.startswith("/openai/")

    def is_embeddings(self, path: str) -> bool:
        return path.endswith("/embeddings") and path.startswith("/openai/")

    def request_view(self, method: str, path: str, query: Mapping[str, str], body: JSON) -> JSON:
        """On a deployment's URL the deployment is the model (a ``model`` in the body is ignored, as Azure does)."""
        match = _DEPLOYMENT_ROUTE.match(path)
        return {**body, "model": match.group(1)} if match else body

    # -- errors -------------------------------------------------------------------------------

    def error(
        self, status: int, message: str | None = None, error_type: str | None = None, code: str | None = None
    ) -> JSON:
        """Azure's own envelope (``code`` and ``message``) for its statuses; the model's 400s are OpenAI's."""
        if status == 400 and code != "content_filter":
            return super().error(status, message, error_type, code)
        return {"error": {"code": code or str(status), "message": message or _MESSAGES.get(status, "Upstream error.")}}

    def not_found(self, method: str, path: str) -> Problem:
        return 404, {"error": {"code": "404", "message": "Resource not found"}}

    def error_headers(self, status: int, body: Any) -> dict[str, str]:
        return {"x-ms-region": "Sweden Central"}

    # -- checks -------------------------------------------------------------------------------

    def check_auth(self, headers: Mapping[str, str]) -> Problem | None:
        return self._credentials(headers, v1=False)

    def authenticate(self, method: str, path_qs: str, headers: Mapping[str, str], raw: bytes) -> Problem | None:
        """In Azure's order: the URL's version, the credentials, the deployment (``path_qs`` as sent: encoded)."""
        raw_path, _, query = path_qs.partition("?")
        path = unquote(raw_path)
        versions = [value for name, _, value in (p.partition("=") for p in query.split("&")) if name == "api-version"]
        match = _DEPLOYMENT_ROUTE.match(path)
        if match is None:  # the v1 path: a version is optional
            if versions and versions[0] not in V1_VERSIONS:
                return 400, {"error": {"code": "BadRequest", "message": "API version not supported"}}
            return self._credentials(headers, v1=True)
        if not versions or versions[0] not in API_VERSIONS:
            return self.not_found(method, path)
        problem = self._credentials(headers, v1=False)
        if problem is None and match.group(1) not in DEPLOYMENTS:
            message = (
                "The API deployment for this resource does not exist. If you created the deployment within the last "
                "5 minutes, please wait a moment and try again."
            )
            return 404, {"error": {"code": "DeploymentNotFound", "message": message}}
        return problem

    def _credentials(self, headers: Mapping[str, str], *, v1: bool) -> Problem | None:
        lowered = {name.lower(): value for name, value in headers.items()}
        scheme, _, token = lowered.get("authorization", "").partition(" ")
        if "api-key" in lowered:
            return None if lowered["api-key"] == self.api_key else (401, self.error(401))
        if scheme.lower() == "bearer" and (token == self.token or (v1 and token == self.api_key)):
            return None
        return 401, {"statusCode": 401, "message": _TOKEN_REFUSED}

    def check_request(self, body: Any, headers: Mapping[str, str]) -> Problem | None:
        problem = super().check_request(body, headers)
        if problem is not None:
            return problem
        if any(FILTER_TRIGGER in text for text in _prompt_texts(body)):
            return 400, self.content_filter_error()
        return None

    def content_filter_error(self) -> JSON:
        return {
            "error": {
                "message": FILTER_MESSAGE,
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": filter_results(filtered="violence"),
                },
            }
        }

    # -- answers ------------------------------------------------------------------------------

    def models(self) -> JSON:
        data = [{"id": name, "object": "model", "created": 1715367049, "owned_by": "system"} for name in DEPLOYMENTS]
        return {"object": "list", "data": data}

    def completion(self, request: JSON, reply: Reply) -> JSON:
        body = super().completion(request, reply)
        verdict = filter_results(filtered="violence" if reply.finish() == "content_filter" else None)
        for choice in body["choices"]:
            choice["content_filter_results"] = verdict
        return {"prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter_results()}], **body}

    def stream(self, request: JSON, reply: Reply) -> StreamPlan:
        """OpenAI's stream, after Azure's preamble (the prompt's verdict, ``choices: []``, empty id and model),
        each choice with its ``content_filter_results`` (the role and finish chunks' empty, as Azure's are)."""
        planned = super().stream(request, reply)
        preamble = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter_results()}],
        }
        verdict = filter_results(filtered="violence" if reply.finish() == "content_filter" else None)
        return StreamPlan(
            head=[data_event(preamble), *(self._annotated(event, verdict) for event in planned.head)],
            chunks=[[self._annotated(event, verdict) for event in chunk] for chunk in planned.chunks],
            tail=[self._annotated(event, verdict) for event in planned.tail],
            failure=planned.failure,
        )

    @staticmethod
    def _annotated(event: bytes, verdict: JSON) -> bytes:
        if not event.startswith(b"data: {"):
            return event
        chunk = json.loads(event[len(b"data: ") :])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            said = any(delta.get(name) for name in ("content", "tool_calls", "refusal"))
            choice["content_filter_results"] = verdict if said or choice.get("finish_reason") else {}
        return data_event(chunk)

"""Azure OpenAI (``type: azure``): OpenAI's wire at Azure's URLs, with Azure's credentials and error envelope.

With ``api_version`` a call goes to the deployment's URL (``/openai/deployments/{model}/…?api-version=V``: the
group entry's ``model`` is the deployment name); without it, to Azure's v1 path (``/openai/v1/…``, ``model`` in the
body). Bodies, answers and streams are OpenAI's, relayed as they come but for one thing: the stream's first chunk,
Azure's prompt-filter verdict with ``choices: []``, rides on the next chunk instead (see ``AzureStream``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict
from urllib.parse import quote

import orjson

from llm_gateway.http import DEFAULT_BOUNDS, SSEEvent, UpstreamBounds, UpstreamResponse
from llm_gateway.providers.adapter import ErrorFields
from llm_gateway.providers.openai_compat import OpenAICompatProvider, OpenAIStream
from llm_gateway.settings import ProviderConfig

# -- configuration -------------------------------------------------------------------------------------------

V1_PREFIX = "/openai/v1"
DEPLOYMENTS_PREFIX = "/openai/deployments"
# A base URL given the way the openai SDK's docs give it (``…/openai/v1``, or AzureOpenAI's ``…/openai``) is the
# resource's origin all the same: the adapter adds the path itself.
_BASE_SUFFIXES = (V1_PREFIX, "/openai")
# Deployments whose heads are kept (the names come from the YAML file, or from callers through ``azure/<name>``:
# bounded, the oldest dropped first).
MAX_DEPLOYMENT_HEADS = 256
# Azure's error codes that say the gateway's configuration is wrong (a deployment or path that does not exist),
# not the caller's request: another deployment may well answer.
_OUR_CONFIGURATION = frozenset({"DeploymentNotFound", "404"})


def resource_url(base_url: str) -> str:
    """The resource's origin (``https://{resource}.openai.azure.com``), a trailing ``/openai[/v1]`` removed."""
    for suffix in _BASE_SUFFIXES:
        if base_url.endswith(suffix):
            return base_url[: -len(suffix)]
    return base_url


def deployment_path(deployment: str, operation: str, api_version: str) -> str:
    """``/openai/deployments/{deployment}/{operation}?api-version=V``, the name and version percent-encoded (a
    caller's ``azure/<name>`` must not reach another path, nor break the request line)."""
    return f"{DEPLOYMENTS_PREFIX}/{quote(deployment, safe='')}/{operation}?api-version={quote(api_version, safe='')}"


def credentials(config: ProviderConfig) -> tuple[dict[str, str], str]:
    """``api-key: <api_key>`` or ``Authorization: Bearer <azure_ad_token>`` (the settings refuse both), and the
    secret."""
    key = config.api_key.get_secret_value() if config.api_key else ""
    token = config.azure_ad_token.get_secret_value() if config.azure_ad_token else ""
    if token:
        return {"Authorization": f"Bearer {token}"}, token
    return {"api-key": key}, key


# -- wire types ----------------------------------------------------------------------------------------------


class FilterCategory(TypedDict, total=False):
    filtered: bool
    severity: str  # safe, low, medium, high
    detected: bool  # jailbreak, protected material


class InnerError(TypedDict, total=False):
    code: str  # ResponsibleAIPolicyViolation
    content_filter_result: dict[str, FilterCategory]


class AzureError(TypedDict):
    """``{"error": AzureError}``; a gateway in front of the resource (APIM, Entra) answers
    ``{"statusCode": 401, "message": …}`` instead."""

    code: str | None
    message: str
    param: NotRequired[str | None]
    type: NotRequired[str | None]
    status: NotRequired[int]
    innererror: NotRequired[InnerError]


# -- translation ---------------------------------------------------------------------------------------------


def read_error(parsed: Any) -> ErrorFields:
    """Azure's error body -> the fields the gateway relays. A prompt refused by the content filter keeps Azure's
    message, with the categories that tripped it summarised (``(filtered: violence medium)``); its 400 is the
    caller's (not retried). A missing deployment or path is the gateway's configuration: another may answer."""
    if not isinstance(parsed, dict):
        return ErrorFields(None)
    error = parsed.get("error")
    if not isinstance(error, dict):
        message = parsed.get("message")  # the resource's front door (Entra token refused, APIM throttling)
        return ErrorFields(message if isinstance(message, str) and message else None)
    message, code = _text(error.get("message")), _text(error.get("code"))
    if code == "content_filter":
        summary = filter_summary(error.get("innererror"))
        if summary and message:
            message = f"{message} (filtered: {summary})"
    return ErrorFields(
        message,
        _text(error.get("type")),
        code,
        _text(error.get("param")),
        True if code in _OUR_CONFIGURATION else None,
    )


def filter_summary(inner: Any) -> str:
    """The categories a content filter result marks ``filtered``: ``violence medium, jailbreak``."""
    result = inner.get("content_filter_result") if isinstance(inner, dict) else None
    if not isinstance(result, dict):
        return ""
    tripped = []
    for category, verdict in result.items():
        if isinstance(verdict, dict) and verdict.get("filtered") is True:
            severity = verdict.get("severity")
            tripped.append(f"{category} {severity}" if isinstance(severity, str) else str(category))
    return ", ".join(tripped)


def is_prompt_filter_preamble(chunk: dict[str, Any]) -> bool:
    """Azure's first stream chunk: the prompt filter's verdict, no choice, no usage (and empty id and model)."""
    return chunk.get("choices") == [] and "prompt_filter_results" in chunk and not chunk.get("usage")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- client --------------------------------------------------------------------------------------------------


class AzureProvider(OpenAICompatProvider):
    """Chat (streams too) and embeddings on an Azure OpenAI resource. The Responses and Messages surfaces reach
    it through chat (``responses: native`` is for ``type: openai`` only)."""

    def __init__(self, name: str, config: ProviderConfig, bounds: UpstreamBounds = DEFAULT_BOUNDS) -> None:
        self._api_version = config.api_version
        if not self._api_version:
            self.chat_path = f"{V1_PREFIX}/chat/completions"
            self.embeddings_path = f"{V1_PREFIX}/embeddings"
        super().__init__(name, config.model_copy(update={"base_url": resource_url(config.base_url)}), bounds)
        # deployment -> (chat head, chat stream head, embeddings head); only with api_version
        self._heads: dict[str, tuple[bytes, bytes, bytes]] = {}

    def credentials(self, config: ProviderConfig) -> tuple[dict[str, str], str]:
        return credentials(config)

    def _deployment_heads(self, deployment: str) -> tuple[bytes, bytes, bytes]:
        heads = self._heads.get(deployment)
        if heads is None:
            assert self._api_version is not None
            chat = deployment_path(deployment, "chat/completions", self._api_version)
            embeddings = deployment_path(deployment, "embeddings", self._api_version)
            heads = (self.request_head(chat), self.request_head(chat, stream=True), self.request_head(embeddings))
            if len(self._heads) >= MAX_DEPLOYMENT_HEADS:
                del self._heads[next(iter(self._heads))]
            self._heads[deployment] = heads
        return heads

    def chat_head(self, model: str, *, stream: bool) -> bytes | None:
        if not self._api_version:
            return None
        chat, chat_stream, _ = self._deployment_heads(model)
        return chat_stream if stream else chat

    def embeddings_head(self, model: str) -> bytes:
        return self._deployment_heads(model)[2] if self._api_version else self._embeddings_head

    def relay(self, response: UpstreamResponse, deadline: float) -> AzureStream:
        return AzureStream(self, response, deadline)

    def error_fields(self, parsed: Any, headers: Mapping[str, str]) -> ErrorFields:
        return read_error(parsed)


class AzureStream(OpenAIStream):
    """OpenAI's stream, but for Azure's preamble: the chunk with ``choices: []`` and ``prompt_filter_results``
    (empty id and model) is held back and its ``prompt_filter_results`` added to the next chunk (the role chunk).

    Relayed as is it would look like content to the router (a chunk without a choice: nothing to wait for), which
    would then commit to this deployment before the answer began, and its empty id and model would be the ones the
    cache and the ledger keep. Per-chunk ``content_filter_results`` and a ``content_filter`` finish pass through."""

    _held: tuple[bytes, Any] | None = None  # the preamble's bytes and its prompt_filter_results
    _opened = False  # a chunk with a choice went by: no preamble any more

    def translate(self, event: SSEEvent) -> tuple[bytes, ...]:
        data = event.data
        if self._opened or data == b"[DONE]":
            return (*self._release(), *super().translate(event))
        chunk = self.parse(data)
        if self._held is None and is_prompt_filter_preamble(chunk):
            self._held = (data, chunk["prompt_filter_results"])
            return ()
        if chunk.get("choices"):
            self._opened = True
            if self._held is not None:
                chunk = {**chunk, "prompt_filter_results": self._held[1]}
                self._held = None
                return self.relay_chunk(orjson.dumps(chunk), chunk)
        return (*self._release(), *self.relay_chunk(data, chunk))

    def _release(self) -> tuple[bytes, ...]:
        """A preamble no chunk with a choice followed (an answer of usage only): relayed as it came."""
        if self._held is None:
            return ()
        data, self._held = self._held[0], None
        return (data,)

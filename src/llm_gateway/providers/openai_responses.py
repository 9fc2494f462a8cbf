"""OpenAI's Responses API passed through natively to a server that implements ``POST <base_url>/responses``.

The caller's body goes upstream with only ``model`` replaced (and ``stream`` set to the call), in the caller's
key order; the answer (a ``response``, or each typed event re-framed as it arrives) comes back as the upstream
sent it. What is read on the way is only what the gateway needs: usage, failures, the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llm_gateway.errors import ProviderProtocolError, UpstreamStreamError
from llm_gateway.http import DEFAULT_BOUNDS, SSEEvent, UpstreamBounds, UpstreamResponse
from llm_gateway.providers.adapter import EventStream, HttpAdapter, passthrough_body, sse_frame
from llm_gateway.providers.openai_compat import OpenAICompatProvider
from llm_gateway.schemas.core import Completion, Usage
from llm_gateway.settings import ProviderConfig

RESPONSES_PATH = "/responses"
# The events that end a whole answer (a cut one, ``incomplete``, is still whole: max_output_tokens said so).
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})
# The events a stream is read for; every other one passes through unparsed.
_READ_EVENTS = TERMINAL_EVENTS | {"response.failed", "error"}


def responses_usage(usage: Any) -> Usage | None:
    """A Responses ``usage`` -> ours: prompt = input_tokens, completion = output_tokens, cached =
    input_tokens_details.cached_tokens; None when absent or malformed."""
    if not isinstance(usage, dict):
        return None
    return Usage.from_openai(
        {
            "prompt_tokens": usage.get("input_tokens"),
            "completion_tokens": usage.get("output_tokens"),
            "prompt_tokens_details": usage.get("input_tokens_details"),
        }
    )


@dataclass(slots=True)
class ResponseCompletion(Completion):
    """An upstream ``response`` (``body``) and its bytes (``raw``), with ``usage`` read in the Responses API's terms."""

    @property
    def usage(self) -> Usage | None:
        return responses_usage(self.body.get("usage"))


class OpenAIResponsesProvider(OpenAICompatProvider):
    """An OpenAI-wire provider whose server also implements the Responses API (``responses: native``):
    chat and embeddings as ``OpenAICompatProvider``, plus ``providers.base.NativeResponses``."""

    def __init__(self, name: str, config: ProviderConfig, bounds: UpstreamBounds = DEFAULT_BOUNDS) -> None:
        super().__init__(name, config, bounds)
        self._responses_head = self.request_head(RESPONSES_PATH)
        self._responses_stream_head = self.request_head(RESPONSES_PATH, stream=True)

    async def responses(self, body: dict[str, Any], model: str, *, timeout: float) -> ResponseCompletion:
        payload = passthrough_body(body, model, stream=False)
        parsed, raw, status = await self.post_json(payload, timeout=timeout, head=self._responses_head)
        if parsed.get("object") != "response":
            raise ProviderProtocolError(
                f"{self.name} answered without a response", provider=self.name, upstream_status=status
            )
        return ResponseCompletion(parsed, raw)

    async def responses_stream(
        self, body: dict[str, Any], model: str, *, timeout: float, deadline: float
    ) -> ResponsesStream:
        payload = passthrough_body(body, model, stream=True)
        response = await self.open_stream(payload, timeout=timeout, head=self._responses_stream_head)
        return ResponsesStream(self, response, deadline)


class ResponsesStream(EventStream):
    """The upstream's typed events relayed one by one as ``event: TYPE\\ndata: DATA\\n\\n``.

    Only ``response.completed``/``response.incomplete`` (usage, the end), ``response.failed`` and ``error``
    (the stream's failure, not relayed) are parsed; deltas pass through unread. An end without a terminal
    event fails the stream. ``response`` is the terminal event's response object, once it came."""

    def __init__(self, adapter: HttpAdapter, response: UpstreamResponse, deadline: float) -> None:
        super().__init__(adapter, response, deadline)
        self.response: dict[str, Any] | None = None

    def translate(self, event: SSEEvent) -> Iterable[bytes]:
        name, data = event.event, event.data
        if name == "message":  # no ``event:`` line (OpenAI always sends one; some servers do not): the data says
            if data == b"[DONE]":  # a chat-style end some servers add: never relayed
                return ()
            kind = self.parse(data).get("type")
            if not isinstance(kind, str) or not kind:
                raise self.invalid()
            name = kind
        if name in _READ_EVENTS:
            self._read(name, self.parse(data))
        return (sse_frame(name, data),)

    def _read(self, name: str, data: dict[str, Any]) -> None:
        if name == "error":
            raise UpstreamStreamError(_failure(data, "error event"), provider=self._provider)
        response = data.get("response")
        if not isinstance(response, dict):
            raise self.invalid()
        if name == "response.failed":
            error = response.get("error")
            raise UpstreamStreamError(
                _failure(error if isinstance(error, dict) else {}, "response.failed"), provider=self._provider
            )
        self.response = response
        self._usage = responses_usage(response.get("usage"))
        self.finished = True

    def ended(self) -> None:
        raise UpstreamStreamError(
            f"{self._provider} ended the stream before response.completed", provider=self._provider
        )


def _failure(error: dict[str, Any], fallback: str) -> str:
    """``code: message`` from an ``error`` event or a failed response's ``error`` (an ``error`` event may also
    nest them under ``error``, as the chat stream's does)."""
    nested = error.get("error")
    if isinstance(nested, dict) and not error.get("message"):
        error = nested
    message, code = error.get("message"), error.get("code")
    text = message if isinstance(message, str) and message else fallback
    return f"{code}: {text}" if isinstance(code, str) and code else text

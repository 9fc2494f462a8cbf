"""The Messages API passed through to Anthropic natively: no translation, the caller's bytes both ways.

The caller's body goes upstream with only ``model`` replaced, with the caller's ``anthropic-version`` and
``anthropic-beta``; the answer (a message, or each stream event re-framed as it arrives) comes back as
the upstream sent it. What is read on the way is only what the gateway needs: usage, errors, the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import orjson

from llm_gateway.errors import InvalidRequest, ProviderProtocolError, UpstreamStreamError
from llm_gateway.http import SSEEvent, UpstreamResponse
from llm_gateway.providers.adapter import EventStream, HttpAdapter, sse_frame
from llm_gateway.providers.anthropic.wire import MESSAGES_PATH, anthropic_error_message, openai_usage
from llm_gateway.providers.base import NativeMessage
from llm_gateway.schemas.core import Usage

COUNT_TOKENS_PATH = f"{MESSAGES_PATH}/count_tokens"
# The caller's headers an Anthropic deployment receives (the lead's filter passes only these).
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
# Heads kept per (anthropic-version, anthropic-beta): callers use a handful; past this they are built per request.
MAX_CACHED_HEADS = 64
# What /v1/messages/count_tokens takes (the SDK's MessageCountTokensParams, beta fields included); it refuses
# any other field ("Extra inputs are not permitted"): max_tokens, stream, temperature, metadata, ...
COUNT_TOKENS_FIELDS = frozenset(
    {
        "model", "messages", "system", "tools", "tool_choice", "thinking", "cache_control", "output_config",
        "speed", "context_management", "mcp_servers", "compaction", "billing_policy",
    }
)  # fmt: skip


class NativeHeads(NamedTuple):
    """The three request heads for one (anthropic-version, anthropic-beta) pair."""

    message: bytes
    stream: bytes
    count_tokens: bytes


class NativeHeadCache:
    """Request heads per pair of forwarded header values, built once each and kept (up to ``MAX_CACHED_HEADS``)."""

    __slots__ = ("_adapter", "_heads", "_max")

    def __init__(self, adapter: HttpAdapter, max_entries: int = MAX_CACHED_HEADS) -> None:
        self._adapter = adapter
        self._max = max_entries
        self._heads: dict[tuple[str | None, str | None], NativeHeads] = {}

    def __len__(self) -> int:
        return len(self._heads)

    def get(self, headers: Mapping[str, str]) -> NativeHeads:
        """The heads carrying ``headers``' ``anthropic-version`` (else the adapter's default) and ``anthropic-beta``;
        every other key (the caller's ``x-api-key``, ``authorization``, ...) is ignored."""
        version = beta = None
        for name, value in headers.items():
            lowered = name.lower()
            if lowered == "anthropic-version":
                version = _header_value(lowered, value)
            elif lowered == "anthropic-beta":
                beta = _header_value(lowered, value)
        key = (version, beta)
        heads = self._heads.get(key)
        if heads is None:
            heads = self._build(version, beta)
            if len(self._heads) < self._max:
                self._heads[key] = heads
        return heads

    def _build(self, version: str | None, beta: str | None) -> NativeHeads:
        extra = {}
        if version is not None:
            extra["anthropic-version"] = version
        if beta is not None:
            extra["anthropic-beta"] = beta
        head = self._adapter.request_head
        return NativeHeads(
            head(MESSAGES_PATH, extra), head(MESSAGES_PATH, extra, stream=True), head(COUNT_TOKENS_PATH, extra)
        )


def _header_value(name: str, value: str) -> str:
    """A value that cannot break the request head: no control characters (CR, LF), and Latin-1."""
    if not value.isprintable() or not value.isascii():
        raise InvalidRequest(f"{name}: invalid header value", param=name)
    return value


def native_usage(usage: Any) -> Usage | None:
    """Anthropic's ``usage`` -> ours: prompt = input + cache writes + cache reads, cached = cache reads."""
    return Usage.from_openai(openai_usage(usage)) if isinstance(usage, dict) else None


def count_tokens_body(body: dict[str, Any], model: str) -> bytes:
    """The caller's body as count_tokens takes it: ``model`` replaced, the fields only creation takes dropped."""
    request = {key: value for key, value in body.items() if key in COUNT_TOKENS_FIELDS}
    request["model"] = model
    return orjson.dumps(request)


def native_message(adapter: HttpAdapter, parsed: dict[str, Any], raw: bytes, status: int) -> NativeMessage:
    if parsed.get("type") != "message":
        raise ProviderProtocolError(
            f"{adapter.name} answered without a message", provider=adapter.name, upstream_status=status
        )
    return NativeMessage(body=parsed, raw=raw, usage=native_usage(parsed.get("usage")))


def input_tokens(adapter: HttpAdapter, parsed: dict[str, Any], status: int) -> int:
    count = parsed.get("input_tokens")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ProviderProtocolError(
            f"{adapter.name} answered count_tokens without input_tokens", provider=adapter.name, upstream_status=status
        )
    return count


class NativeStream(EventStream):
    """Anthropic's events relayed one by one as ``event: NAME\\ndata: DATA\\n\\n``, ``ping`` included.

    Only ``message_start``, ``message_delta`` (usage), ``error`` and ``message_stop`` are parsed; content
    deltas pass through unread. An ``error`` event, or an end without ``message_stop``, fails the stream."""

    def __init__(self, adapter: HttpAdapter, response: UpstreamResponse, deadline: float) -> None:
        super().__init__(adapter, response, deadline)
        self._counts: dict[str, int] | None = None

    @property
    def usage(self) -> Usage | None:
        return native_usage(self._counts) if self._counts is not None else None

    def translate(self, event: SSEEvent) -> Iterable[bytes]:
        name = event.event
        if name in ("message_start", "message_delta", "message_stop", "error"):
            data = self.parse(event.data)
            if name == "error":
                raise UpstreamStreamError(anthropic_error_message(data), provider=self._provider)
            if name == "message_start":
                message = data.get("message")
                self._add_usage(message.get("usage") if isinstance(message, dict) else None)
            elif name == "message_delta":
                self._add_usage(data.get("usage"))
            else:
                self.finished = True
        return (sse_frame(name, event.data),)

    def ended(self) -> None:
        raise UpstreamStreamError(f"{self._provider} ended the stream before message_stop", provider=self._provider)

    def _add_usage(self, usage: Any) -> None:
        """message_start's counts, then message_delta's (cumulative: output, and any updated input counts)."""
        if not isinstance(usage, dict):
            return
        counts = {key: value for key, value in usage.items() if isinstance(value, int) and not isinstance(value, bool)}
        self._counts = {**(self._counts or {}), **counts}

"""What the pipeline needs to know of an API surface: one codec per surface, one pipeline for all
(docs/architecture.md, "Adding a surface").

The pipeline (``llm_gateway.pipeline``) runs identify -> admit -> cache -> route -> settle ->
record once, for every surface; everything that depends on a surface's wire format is asked of
its ``Surface``: how many tokens to reserve, the cache key, one upstream attempt in that format
(natively or translated, per deployment), the usage and the text of an answer, how a stream's
items read and assemble, how a cached answer replays as a stream. The HTTP side (parsing a
request, rendering answers, stream framing and errors) lives with the route in ``api/``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from llm_gateway.providers.base import Provider
from llm_gateway.schemas.core import ChunkStream, Completion, Usage


class StreamObserver(Protocol):
    """What a stream's reader reports of each item (``pipeline.meter.StreamMeter`` counts it)."""

    def text(self, text: str) -> None:
        """Generated text (content, reasoning, refusal, tool names and arguments): counted against the cap."""
        ...

    def finish(self, index: int, reason: str) -> None: ...

    def model(self, name: str) -> None: ...


class SurfaceRequest(Protocol):
    """A parsed request of any surface: its JSON as received, the public model, streaming or not."""

    @property
    def body(self) -> dict[str, Any]: ...

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...


R = TypeVar("R", bound=SurfaceRequest, contravariant=True)


class Surface(Protocol[R]):
    """One API surface's codec, as the pipeline uses it (``surfaces/chat.py``, ``surfaces/messages.py``)."""

    name: str  # the ledger's ``endpoint``: chat, messages, ...
    route: str  # the route telemetry names: /v1/chat/completions, ...
    operation: str  # gen_ai.operation.name: chat, embeddings

    # -- admission ---------------------------------------------------------------------------
    async def prompt_tokens(self, request: R) -> int:
        """The prompt's estimate (tokens reserved before the upstream says)."""
        ...

    def completion_cap(self, request: R) -> int | None:
        """The caller's completion cap per choice; None when the gateway is to choose it."""
        ...

    def choices(self, request: R) -> int: ...

    def upstream_body(self, request: R, cap: int | None) -> dict[str, Any]:
        """The body as sent upstream: with ``cap`` as its completion cap when the gateway chose one."""
        ...

    # -- cache -------------------------------------------------------------------------------
    def cache_key(self, request: R, scope: str | None) -> str | None:
        """The cache key (the surface's name in it), or None when answers to ``request`` are not cached."""
        ...

    def storable(self, answer: dict[str, Any], *, capped_by_gateway: bool) -> bool:
        """A whole answer to the request (not one cut short by a cap the gateway chose)."""
        ...

    def to_cache(self, answer: dict[str, Any]) -> dict[str, Any]:
        """The answer as the cache keeps it (as it is, or in a compact form ``from_cache`` reverses)."""
        ...

    def from_cache(self, stored: dict[str, Any]) -> dict[str, Any]: ...

    def replay(self, stored: dict[str, Any], request: R) -> list[bytes]:
        """A stored answer as the items of a stream in this surface's format."""
        ...

    # -- one upstream attempt ----------------------------------------------------------------
    async def answer(
        self, provider: Provider, model: str, request: R, body: dict[str, Any], *, timeout: float
    ) -> Completion:
        """One non-streaming attempt on one deployment, answered in this surface's format.

        Raises ``UnsupportedFeature`` when this deployment cannot carry the request (it is skipped)."""
        ...

    async def open_stream(
        self, provider: Provider, model: str, request: R, body: dict[str, Any], *, timeout: float, deadline: float
    ) -> ChunkStream:
        """Open a stream on one deployment; its items are in this surface's stream format."""
        ...

    def has_content(self, item: bytes) -> bool:
        """Whether a stream item carries content: until the first one, a stream may still fall back."""
        ...

    def dropped_params(self, provider: Provider, model: str, request: R, body: dict[str, Any]) -> tuple[str, ...]:
        """The caller's parameters the deployment that answered did not honour (never dropped silently)."""
        ...

    # -- answers -----------------------------------------------------------------------------
    def usage(self, answer: dict[str, Any]) -> Usage | None: ...

    def answer_text(self, answer: dict[str, Any]) -> str:
        """The generated text of an answer, to count when the upstream reported no usage."""
        ...

    def response_model(self, answer: dict[str, Any]) -> str | None: ...

    def finish_reasons(self, answer: dict[str, Any]) -> tuple[str, ...]: ...

    # -- streams -----------------------------------------------------------------------------
    def read_item(
        self, item: bytes, observer: StreamObserver, parsed: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Parse one stream item (unless ``parsed``: the stream already did) and tell ``observer`` its text,
        finish reasons and model; the parsed item."""
        ...

    def relay_item(self, item: bytes, parsed: dict[str, Any] | None, request: R) -> bytes | None:
        """The item as the caller gets it (None: not at all)."""
        ...

    def assemble(self, items: list[bytes]) -> dict[str, Any]:
        """A stream's items as one answer (for the cache, and telemetry that records answers)."""
        ...


def answer_model(answer: dict[str, Any]) -> str | None:
    """The ``model`` an answer names (the upstream's), in any of the formats that have one."""
    model = answer.get("model")
    return model if isinstance(model, str) else None

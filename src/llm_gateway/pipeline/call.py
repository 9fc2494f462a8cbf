"""One request on its way through the pipeline, and what it answers: the types every step shares."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from llm_gateway.auth.identity import Identity
from llm_gateway.errors import Attempt
from llm_gateway.limits import Ticket
from llm_gateway.providers.router import Routed
from llm_gateway.surfaces.base import Surface, SurfaceRequest
from llm_gateway.telemetry import AttemptRecord, RequestRecord


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What ``Cache-Control`` asks of the cache: ``no-cache`` skips the lookup, ``no-store`` skips both."""

    lookup: bool = True
    store: bool = True

    @classmethod
    def from_header(cls, value: str | None) -> CachePolicy:
        if not value:
            return _DEFAULT_POLICY
        directives = {part.strip().split("=", 1)[0].lower() for part in value.split(",")}
        if "no-store" in directives:
            return cls(lookup=False, store=False)
        return cls(lookup="no-cache" not in directives, store=True)


_DEFAULT_POLICY = CachePolicy()


@dataclass(slots=True)
class Call:
    """One request on its way through the pipeline: what each step needs from the ones before.

    ``settled`` and ``recorded`` make settlement and the telemetry record happen exactly once,
    whichever path (answer, failure, cancellation) reaches them first.
    """

    surface: Surface[Any]
    request: SurfaceRequest
    identity: Identity
    record: RequestRecord
    policy: CachePolicy
    ticket: Ticket | None = None
    cache_key: str | None = None
    upstream_body: dict[str, Any] | None = None  # the caller's body as sent upstream (the reserved cap set)
    settled: bool = False
    recorded: bool = False
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def cache_header(self) -> str:
        if self.record.cache is not None:
            return self.record.cache
        return "bypass"


@dataclass(slots=True)
class Answer:
    body: bytes
    headers: dict[str, str]


class StreamAnswer(Protocol):
    """A stream's headers and its chunk payloads (JSON bytes, no SSE framing, no ``[DONE]``).

    Iterating ``chunks`` raises ``GatewayError`` when the upstream fails after the first byte.
    ``aclose()`` must be awaited once the endpoint is done with the stream, however it ended
    (finished, failed, cancelled before its first byte): it settles and records the request.
    """

    headers: dict[str, str]
    chunks: AsyncGenerator[bytes, None]

    async def aclose(self) -> None: ...


def describe_answer(call: Call, answer: dict[str, Any]) -> None:
    """What telemetry reads from an answer (plain or assembled from a stream), in the call's surface's terms."""
    record, surface = call.record, call.surface
    record.response_model = surface.response_model(answer)
    record.response_body = answer
    record.finish_reasons = surface.finish_reasons(answer)


def attempt_record(attempt: Attempt) -> AttemptRecord:
    return AttemptRecord(
        attempt.provider, attempt.model, attempt.start, attempt.duration, attempt.status, attempt.error or None
    )


def routed_headers(record: RequestRecord, routed: Routed) -> dict[str, str]:
    """Who answered, after how many attempts, and what of the request it did not honour (never silently)."""
    headers = {"x-gateway-provider": routed.provider, "x-gateway-attempts": str(len(routed.attempts))}
    if record.dropped_params:
        headers["x-gateway-dropped-params"] = dropped_params_header(record.dropped_params)
    return headers


# The most parameter names ``x-gateway-dropped-params`` lists; past it, how many more there were.
MAX_DROPPED_NAMES = 32


def dropped_params_header(names: tuple[str, ...]) -> str:
    """The names as a header value, whatever the caller named its fields: each percent-encoded past plain
    ASCII (a raw CR, LF or non-Latin-1 character would break the answer), at most ``MAX_DROPPED_NAMES``."""
    listed = [quote(name, safe=_NAME_SAFE) for name in names[:MAX_DROPPED_NAMES]]
    if len(names) > MAX_DROPPED_NAMES:
        listed.append(f"+{len(names) - MAX_DROPPED_NAMES} more")
    return ",".join(listed)


_NAME_SAFE = "._-[]"

"""What the pipeline tells telemetry about one request: a plain record filled as the request runs.

The pipeline builds one ``RequestRecord`` per request and hands it to ``Telemetry.record()`` once,
when the answer is complete. Spans, metrics, the log line and the Helicone log are all derived
from it afterwards, so nothing telemetry-related runs while the upstream is being called.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

CacheStatus = Literal["hit", "miss"]


@dataclass(slots=True)
class AttemptRecord:
    """One call to one deployment. ``error`` is None when it answered; else a low-cardinality kind.

    ``start`` is ``time.perf_counter()`` at the attempt's start (same clock as ``RequestRecord.start``);
    for a stream the answering attempt's ``duration`` runs until the upstream stream ended.
    """

    provider: str
    model: str
    start: float
    duration: float = 0.0
    status: int | None = None
    error: str | None = None

    @classmethod
    def begin(cls, provider: str, model: str) -> AttemptRecord:
        return cls(provider, model, time.perf_counter())

    def end(self, *, status: int | None = None, error: str | None = None) -> AttemptRecord:
        self.duration = time.perf_counter() - self.start
        self.status = status
        self.error = error
        return self


@dataclass(slots=True)
class RequestRecord:
    """One request as telemetry sees it. Only ``request_body``/``response_body`` may hold content;
    they are read solely for Helicone and for spans when content recording is on, never for logs.
    """

    request_id: str
    route: str
    model: str  # the public model (group) the caller asked for
    start: float  # time.perf_counter() when the request arrived
    start_ns: int  # time.time_ns() at the same moment (spans and Helicone need wall-clock time)
    stream: bool = False
    user_id: str | None = None
    key_id: str | None = None
    provider: str | None = None  # the deployment that answered
    upstream_model: str | None = None  # the model name sent to that deployment
    response_model: str | None = None  # the model the upstream says answered
    attempts: list[AttemptRecord] = field(default_factory=list)
    cache: CacheStatus | None = None  # None: the cache was not consulted
    status: int = 200
    error: str | None = None  # the GatewayError ``code`` (or class name) when the request failed
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration: float | None = None  # total seconds; set by ``finish()`` or by ``record()``
    upstream_latency: float | None = None  # seconds spent on upstreams; default: sum of the attempts
    ttft: float | None = None  # streams: seconds from arrival to the first byte sent to the caller
    finish_reasons: tuple[str, ...] = ()
    dropped_params: tuple[str, ...] = ()  # the caller's parameters the answering deployment did not honour
    operation: str = "chat"  # gen_ai.operation.name: chat, embeddings
    cost_usd: Decimal | None = None  # what the answer cost (None: not settled; 0 for a cache hit or unpriced)
    unpriced: bool = False  # answered by a deployment without a price
    request_body: dict[str, Any] | None = None
    response_body: dict[str, Any] | None = None

    @classmethod
    def begin(cls, request_id: str, route: str, model: str, **fields: Any) -> RequestRecord:
        return cls(request_id, route, model, time.perf_counter(), time.time_ns(), **fields)

    def finish(self) -> RequestRecord:
        if self.duration is None:
            self.duration = time.perf_counter() - self.start
        return self

    def first_byte(self) -> None:
        """Call when the first chunk goes to the caller (streams)."""
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.start

    @property
    def upstream_seconds(self) -> float:
        if self.upstream_latency is not None:
            return self.upstream_latency
        return sum(attempt.duration for attempt in self.attempts)

    @property
    def answered(self) -> AttemptRecord | None:
        """The attempt that produced the answer, if any."""
        if self.attempts and self.attempts[-1].error is None:
            return self.attempts[-1]
        return None

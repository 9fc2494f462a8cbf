"""The gateway's Prometheus metrics, updated from one ``RequestRecord`` per request.

Per-process by default: each worker exposes its own counters on ``/metrics``. With
``PROMETHEUS_MULTIPROC_DIR`` set *in the process environment before prometheus_client is first
imported* (prometheus_client decides then) and passed here as ``multiproc_dir``, every worker
writes its values to files in that directory and ``/metrics`` on any worker serves the sum of
all of them. The directory must be emptied before the workers start (``clear_multiproc_dir``).

Label children are cached in plain dicts, and model names come from callers, so the model
label is capped (``MAX_MODELS`` distinct values, then ``other``) to keep cardinality bounded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from llm_gateway.telemetry.genai import error_kind
from llm_gateway.telemetry.record import RequestRecord

MAX_MODELS = 200
OTHER = "other"
PREFIX = "llm_gateway"
# Gateway codes of refusals by the limits, as ``errors.RateLimited``/``QuotaExceeded`` spell them.
REFUSALS = {"rate_limit_exceeded": "rate_limit", "insufficient_quota": "budget"}

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

M = TypeVar("M", Counter, Gauge, Histogram)


class _Children(Generic[M]):
    """``metric.labels(*values)`` behind a dict lookup: prometheus_client locks on every labels() call."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._cache: dict[tuple[str, ...], M] = {}

    def __call__(self, *labels: str) -> M:
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self._metric.labels(*labels)
        return child


class _Bounded:
    """Lets the first ``limit`` distinct values through; later ones become ``other``."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


class GatewayMetrics:
    def __init__(self, *, multiproc_dir: str | None = None) -> None:
        if multiproc_dir is not None and values.ValueClass is values.MutexValue:
            raise RuntimeError(
                "PROMETHEUS_MULTIPROC_DIR must be in the environment before prometheus_client is imported "
                "(set it for the server process, not only in the gateway's settings)"
            )
        self._multiproc_dir = multiproc_dir
        self.registry = CollectorRegistry(auto_describe=True)
        if multiproc_dir is None:
            ProcessCollector(registry=self.registry)
        self._model = _Bounded(MAX_MODELS)
        self._build(self.registry)

    def _build(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...]) -> _Children[Counter]:
            return _Children(Counter(f"{PREFIX}_{name}", doc, labels, registry=registry))

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> _Children[Histogram]:
            return _Children(Histogram(f"{PREFIX}_{name}", doc, labels, registry=registry, buckets=buckets))

        self.requests = counter(
            "requests",
            "Requests answered, by route, model, provider and HTTP status.",
            ("route", "model", "provider", "status"),
        )
        self.latency = histogram(
            "request_duration_seconds",
            "Total request latency, until the last byte.",
            ("route", "model", "provider"),
            _LATENCY,
        )
        self.upstream = histogram(
            "upstream_duration_seconds", "Time spent waiting on upstream providers.", ("provider", "model"), _LATENCY
        )
        self.overhead = histogram(
            "overhead_seconds", "Latency the gateway adds: total minus upstream time.", ("route",), _OVERHEAD
        )
        self.ttft = histogram(
            "time_to_first_token_seconds",
            "Streams: arrival to first byte sent to the caller.",
            ("model", "provider"),
            _LATENCY,
        )
        self.tokens = counter(
            "tokens", "Tokens, by direction (input = prompt, output = completion).", ("model", "provider", "direction")
        )
        self.cache = counter("cache_lookups", "Response-cache lookups, by result (hit or miss).", ("model", "result"))
        self.cache_errors = counter(
            "cache_errors", "Response-cache backend failures (each a miss or a skipped write), by kind.", ("kind",)
        )
        self.fallbacks = counter(
            "fallbacks", "Times a failed deployment was followed by another one.", ("model", "provider")
        )
        self.upstream_errors = counter(
            "upstream_errors", "Failed upstream attempts, by provider and kind.", ("provider", "kind")
        )
        self.cost = counter(
            "cost_usd",
            "US dollars spent, by model group and provider (a cache hit costs nothing).",
            ("model", "provider"),
        )
        self.unpriced = counter(
            "unpriced_requests", "Answers from a deployment without a price (they cost 0).", ("model", "provider")
        )
        self.refusals = counter("refusals", "Requests refused by the limits: rate_limit or budget.", ("reason",))
        self.helicone_depth = Gauge(
            f"{PREFIX}_helicone_queue_depth",
            "Helicone logs waiting to be sent.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.helicone_sent = Counter(f"{PREFIX}_helicone_sent", "Logs Helicone accepted.", registry=registry)
        self.helicone_dropped = counter("helicone_dropped", "Helicone logs given up on, by reason.", ("reason",))

    def cache_error(self, kind: str) -> None:
        """The response cache's ``on_error``: its backend failed (timeout, unavailable, ...) and it failed open."""
        self.cache_errors(kind).inc()

    def observe(self, record: RequestRecord) -> None:
        """Every counter and histogram for one finished request."""
        model = self._model(record.model)
        provider = record.provider or ("cache" if record.cache == "hit" else "none")
        route = record.route
        total = record.duration or 0.0
        upstream = record.upstream_seconds
        self.requests(route, model, provider, str(record.status)).inc()
        self.latency(route, model, provider).observe(total)
        self.overhead(route).observe(max(0.0, total - upstream))
        if upstream > 0 and record.provider:
            self.upstream(record.provider, model).observe(upstream)
        if record.stream and record.ttft is not None:
            self.ttft(model, provider).observe(record.ttft)
        if record.prompt_tokens:
            self.tokens(model, provider, "input").inc(record.prompt_tokens)
        if record.completion_tokens:
            self.tokens(model, provider, "output").inc(record.completion_tokens)
        if record.cache is not None:
            self.cache(model, record.cache).inc()
        if record.cost_usd and record.provider:
            self.cost(model, record.provider).inc(float(record.cost_usd))
        if record.unpriced and record.provider:
            self.unpriced(model, record.provider).inc()
        attempts = record.attempts
        for index, attempt in enumerate(attempts):
            if attempt.error is None:
                continue
            self.upstream_errors(attempt.provider, error_kind(attempt.status, attempt.error)).inc()
            if index + 1 < len(attempts):
                self.fallbacks(model, attempt.provider).inc()
        # The gateway's own refusals come before any upstream attempt; an upstream's 429 is not one of them.
        reason = REFUSALS.get(record.error) if record.error and not attempts else None
        if reason is not None:
            self.refusals(reason).inc()

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type (OpenMetrics when the scraper asks for it)."""
        registry = self.registry
        if self._multiproc_dir is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self._multiproc_dir)  # type: ignore[no-untyped-call]
        encoder: Callable[[CollectorRegistry], bytes]
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type


def clear_multiproc_dir(path: str) -> None:
    """Empty (or create) the multiprocess directory; call once before starting the workers."""
    directory = Path(path)
    if directory.exists():
        for entry in directory.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    else:
        directory.mkdir(parents=True)


def mark_worker_dead(path: str, pid: int | None = None) -> None:
    """Drop a stopped worker's live gauges (``livesum``) from the multiprocess totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid or os.getpid(), path)  # type: ignore[no-untyped-call]

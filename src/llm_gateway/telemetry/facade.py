"""``Telemetry``: the one object the pipeline talks to. One ``record()`` call per finished request.

Attempt spans are written after the fact from the record's attempt timings (explicit start and
end timestamps, parented to the request's server span), so nothing telemetry-related runs while
an upstream is being called, and with tracing off no span object is ever created.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from llm_gateway.telemetry import genai
from llm_gateway.telemetry.early_refusals import EarlyRefusalRecorder, mark_recorded
from llm_gateway.telemetry.helicone import HeliconeLogger
from llm_gateway.telemetry.logs import RequestLog
from llm_gateway.telemetry.metrics import GatewayMetrics, mark_worker_dead
from llm_gateway.telemetry.otel import SCOPE, OtelPipeline, setup_otel
from llm_gateway.telemetry.record import AttemptRecord, RequestRecord

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import SpanProcessor
    from starlette.applications import Starlette
    from starlette.types import ASGIApp

    from llm_gateway.telemetry.finished_spans import FinishedSpans

log = logging.getLogger(__name__)
_UNSET = Status(StatusCode.UNSET)

# At shutdown, how long the last OTLP export may hold the process: a dead or slow collector must not
# keep it past its grace period (each exporter waits OTEL_EXPORTER_OTLP_TIMEOUT, 10 s, per signal).
OTEL_SHUTDOWN_SECONDS = 5.0
_MAX_ATTRIBUTE_SETS = 1024  # of GenAI metric attribute sets kept built; model names come from upstreams
_AttributeSets = tuple[genai.Attributes, genai.Attributes, genai.Attributes]


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """What telemetry needs from the gateway's settings (the ``OTEL_*`` variables travel separately)."""

    record_content: bool = False  # TELEMETRY_RECORD_CONTENT: prompts/answers on spans
    user_id: genai.UserIdMode = "hash"  # TELEMETRY_USER_ID: gateway.user_id on spans
    user_id_salt: str = ""  # TELEMETRY_USER_ID_SALT: key of the user-id hash
    helicone_api_key: str | None = None
    helicone_base_url: str = "https://api.worker.helicone.ai"
    helicone_queue_size: int = 1000
    helicone_batch_size: int = 16
    helicone_timeout_seconds: float = 5.0
    helicone_log_content: bool = True
    prometheus_multiproc_dir: str | None = None
    service_version: str = ""
    # Provider name -> ``gen_ai.provider.name`` where that is not the name (``genai.provider_systems``).
    provider_systems: Mapping[str, str] = field(default_factory=dict)


class Telemetry:
    def __init__(
        self,
        settings: TelemetrySettings,
        *,
        metrics: GatewayMetrics,
        otel: OtelPipeline | None = None,
        helicone: HeliconeLogger | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.otel = otel
        self.helicone = helicone
        self._log = request_log or RequestLog()
        self._tracer: trace.Tracer | None = otel.tracer if otel else None
        self._attempt_spans: FinishedSpans | None = None
        if self._tracer is not None:  # the SDK is imported only when tracing is on
            from llm_gateway.telemetry.finished_spans import FinishedSpans

            self._attempt_spans = FinishedSpans(self._tracer, SCOPE)
        meter = otel.meter if otel else None
        self._genai = _GenAIMetrics(meter, settings.provider_systems) if meter is not None else None
        self._salt = settings.user_id_salt.encode()

    @classmethod
    def create(
        cls,
        settings: TelemetrySettings,
        otel_env: Mapping[str, str],
        *,
        span_processor: SpanProcessor | None = None,
        metric_reader: MetricReader | None = None,
    ) -> Telemetry:
        """Everything from settings; OTel is only set up when ``otel_env`` turns export on."""
        metrics = GatewayMetrics(multiproc_dir=settings.prometheus_multiproc_dir)
        otel = setup_otel(
            otel_env,
            service_version=settings.service_version,
            span_processor=span_processor,
            metric_reader=metric_reader,
        )
        helicone = None
        if settings.helicone_api_key:
            helicone = HeliconeLogger(
                settings.helicone_api_key,
                settings.helicone_base_url,
                queue_size=settings.helicone_queue_size,
                batch_size=settings.helicone_batch_size,
                timeout=settings.helicone_timeout_seconds,
                include_content=settings.helicone_log_content,
                metrics=metrics,
            )
        return cls(settings, metrics=metrics, otel=otel, helicone=helicone)

    @property
    def tracing(self) -> bool:
        return self._tracer is not None

    @property
    def wants_stream_body(self) -> bool:
        """Whether a streamed answer, assembled (``cache.chunks_to_completion``), is read from the record."""
        return self.helicone is not None or (self.settings.record_content and self._tracer is not None)

    def install(self, app: Starlette, *, routes: Mapping[str, str] | None = None) -> None:
        """Add the middleware that records requests refused before the pipeline on ``routes`` (path -> route
        name), and outside it the server-span middleware, only when tracing is on. Call before the app starts."""
        if routes:
            app.add_middleware(EarlyRefusalRecorder, record=self.record, routes=dict(routes))
        if self._tracer is not None:
            from llm_gateway.telemetry.server_span import ServerSpanMiddleware

            app.add_middleware(ServerSpanMiddleware, tracer=self._tracer, routes=frozenset(routes or ()))

    def wrap(self, app: ASGIApp, *, routes: Mapping[str, str]) -> ASGIApp:
        """``app`` inside the same two wrappers ``install`` adds: for an entry served outside the Starlette
        stack (the chat routes), so its requests are recorded and traced like every other."""
        wrapped: ASGIApp = EarlyRefusalRecorder(app, record=self.record, routes=dict(routes))
        if self._tracer is not None:
            from llm_gateway.telemetry.server_span import ServerSpanMiddleware

            wrapped = ServerSpanMiddleware(wrapped, tracer=self._tracer, routes=frozenset(routes))
        return wrapped

    async def start(self) -> None:
        if self.helicone is not None:
            await self.helicone.start()

    async def aclose(self) -> None:
        """Flush Helicone's queue and the OTLP exporters side by side, each within its own bound."""
        closing = []
        if self.helicone is not None:
            closing.append(self.helicone.aclose())
        if self.otel is not None:
            closing.append(_run_within(self.otel.shutdown, OTEL_SHUTDOWN_SECONDS, "OpenTelemetry export"))
        await asyncio.gather(*closing)
        if self.settings.prometheus_multiproc_dir is not None:  # this worker's live gauges leave the sum
            mark_worker_dead(self.settings.prometheus_multiproc_dir)

    def record(self, record: RequestRecord) -> None:
        """Metrics, spans, GenAI metrics, the log line, the Helicone log. Never raises."""
        try:
            mark_recorded()
            record.finish()
            self.metrics.observe(record)
            if self._tracer is not None:
                self._trace(self._tracer, record)
            if self._genai is not None:
                self._genai.record(record)
            self._log.write(record)
            if self.helicone is not None and record.attempts:
                self.helicone.submit(record)
        except Exception:
            log.exception("telemetry: recording request %s failed", record.request_id)

    def _trace(self, tracer: trace.Tracer, record: RequestRecord) -> None:
        server = trace.get_current_span()
        server_context = server.get_span_context()
        if server_context.is_valid and not server_context.trace_flags.sampled:
            # Sampled out (OTEL_TRACES_SAMPLER): every sampler the gateway offers drops the attempt spans
            # too (parent-based, or the same trace-id ratio), so skip building them and their attributes.
            return
        user_id = genai.user_id_value(record.user_id, self.settings.user_id, self._salt)
        if server.is_recording():
            server.set_attributes(genai.server_attributes(record, user_id))
        assert self._attempt_spans is not None
        for index, attempt in enumerate(record.attempts):
            start_ns = record.start_ns + round((attempt.start - record.start) * 1e9)
            system = self.settings.provider_systems.get(attempt.provider)
            attributes = genai.attempt_attributes(record, attempt, index, user_id, system)
            status = _UNSET
            if attempt.error is not None:
                status = Status(StatusCode.ERROR, genai.error_kind(attempt.status, attempt.error))
            elif self.settings.record_content:
                attributes.update(genai.content_attributes(record))
            self._attempt_spans.write(
                genai.span_name(attempt.model, record.operation),
                parent=server_context,
                attributes=attributes,
                status=status,
                start_ns=start_ns,
                end_ns=start_ns + round(attempt.duration * 1e9),
            )


class _GenAIMetrics:
    """``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` and time to first chunk, per attempt."""

    def __init__(self, meter: Meter, provider_systems: Mapping[str, str]) -> None:
        self._systems = provider_systems
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=genai.DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=genai.TOKEN_BUCKETS,
        )
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed answer.",
            explicit_bucket_boundaries_advisory=genai.DURATION_BUCKETS,
        )

        # The attribute sets repeat from request to request (provider, model, answer model or error kind):
        # built once each, with their input/output token variants. The SDK copies what it keeps.
        self._attributes: dict[tuple[str, str, str | None, str | None, str], _AttributeSets] = {}

    def _sets(self, attempt: AttemptRecord, response_model: str | None, operation: str) -> _AttributeSets:
        error = genai.error_kind(attempt.status, attempt.error) if attempt.error is not None else None
        key = (attempt.provider, attempt.model, response_model, error, operation)
        sets = self._attributes.get(key)
        if sets is None:
            if len(self._attributes) >= _MAX_ATTRIBUTE_SETS:
                self._attributes.clear()
            system = self._systems.get(attempt.provider)
            base = genai.metric_attributes(attempt, response_model, operation, system)
            sets = self._attributes[key] = (
                base,
                {**base, genai.TOKEN_TYPE: "input"},
                {**base, genai.TOKEN_TYPE: "output"},
            )
        return sets

    def record(self, record: RequestRecord) -> None:
        for attempt in record.attempts:
            answered = attempt.error is None
            attributes, input_attributes, output_attributes = self._sets(
                attempt, (record.response_model or attempt.model) if answered else None, record.operation
            )
            self.duration.record(attempt.duration, attributes)
            if not answered:
                continue
            if record.prompt_tokens is not None:
                self.tokens.record(record.prompt_tokens, input_attributes)
            if record.completion_tokens is not None:
                self.tokens.record(record.completion_tokens, output_attributes)
            if record.stream and record.ttft is not None:
                self.first_chunk.record(max(0.0, record.ttft - (attempt.start - record.start)), attributes)


async def _run_within(work: Callable[[], object], seconds: float, what: str) -> None:
    """Run blocking ``work`` in a daemon thread and wait for it at most ``seconds``; then leave it behind."""
    finished = threading.Event()

    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("%s failed at shutdown", what)
        finally:
            finished.set()

    threading.Thread(target=run, name="telemetry-shutdown", daemon=True).start()
    if not await asyncio.to_thread(finished.wait, seconds):
        log.warning("%s did not finish within %.0f s at shutdown; not waiting for it", what, seconds)

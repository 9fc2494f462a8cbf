"""Attempt spans written as finished spans, straight to the tracer's span processors.

Why: an attempt span is known whole only after the fact (its times come from the request's
record), so the SDK's live-span machinery (sampler call, attribute cleaning, a lock per
attribute, ``on_start``) buys nothing for it and costs ~60 µs a span on the event loop; a
``ReadableSpan`` handed to the processors' ``on_end`` costs ~8. The span is the child of the
request's server span and shares its sampling decision (every sampler the gateway offers is
parent-based or by trace id, so the child of a sampled span is sampled). Without a valid
parent the SDK's own path is used, so the sampler decides as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, TraceFlags

if TYPE_CHECKING:
    from opentelemetry import trace

    from llm_gateway.telemetry.genai import Attributes

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class FinishedSpans:
    def __init__(self, tracer: trace.Tracer, scope_name: str, scope_version: str | None = None) -> None:
        self._tracer = tracer
        sdk = tracer if isinstance(tracer, SdkTracer) else None
        self._sdk = sdk
        self._scope = InstrumentationScope(scope_name, scope_version)

    def write(
        self,
        name: str,
        *,
        parent: SpanContext,
        attributes: Attributes,
        status: Status,
        start_ns: int,
        end_ns: int,
    ) -> None:
        sdk = self._sdk
        if sdk is None or not parent.is_valid:
            span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes, start_time=start_ns)
            span.set_status(status)
            span.end(end_time=end_ns)
            return
        context = SpanContext(parent.trace_id, sdk.id_generator.generate_span_id(), False, _SAMPLED, parent.trace_state)
        sdk.span_processor.on_end(
            ReadableSpan(
                name=name,
                context=context,
                parent=parent,
                resource=sdk.resource,
                attributes=attributes,
                kind=SpanKind.CLIENT,
                status=status,
                start_time=start_ns,
                end_time=end_ns,
                instrumentation_scope=self._scope,
            )
        )

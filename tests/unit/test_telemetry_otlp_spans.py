"""The direct OTLP span encoding parses to exactly the message the SDK's encoder builds."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from llm_gateway.telemetry.otlp_spans import DirectOtlpSpanExporter, encode_request


def _spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "gw", "n": 3}, schema_url="https://schema/1"))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("llm_gateway", "1.2", schema_url="https://schema/2")
    other = provider.get_tracer("other")
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1), TraceState([("v", "1")])
    )
    server = tracer.start_span(
        "POST /v1/chat", context=set_span_in_context(NonRecordingSpan(remote)), kind=SpanKind.SERVER
    )
    server.set_attributes({"http.response.status_code": 500, "error.type": "500", "ratio": 0.25, "ok": False})
    server.record_exception(ValueError("boom"))
    server.set_status(Status(StatusCode.ERROR))
    client = tracer.start_span(
        "chat gpt-4o-mini",
        context=set_span_in_context(server),
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.system": "openai",
            "gen_ai.usage.input_tokens": 12,
            "negative": -5,
            "big": 2**40,
            "gen_ai.response.finish_reasons": ("stop", "length"),
            "flags": (True, False),
            "temperature": 0.7,
            "unicode": "h\u00e9llo \u2603",
            "empty": "",
        },
        start_time=1_700_000_000_000_000_000,
    )
    client.set_status(Status(StatusCode.ERROR, "http_503"))
    client.end(end_time=1_700_000_000_123_456_789)
    server.end()
    lone = other.start_span("internal")
    lone.end()
    return list(exporter.get_finished_spans())


def test_the_direct_encoding_is_the_sdk_message() -> None:
    spans = _spans()
    assert ExportTraceServiceRequest.FromString(encode_request(spans)) == encode_spans(spans)


def test_each_span_alone_and_an_empty_batch_match_too() -> None:
    for span in _spans():
        assert ExportTraceServiceRequest.FromString(encode_request([span])) == encode_spans([span])
    assert encode_request([]) == b""


def test_a_batch_with_links_goes_through_the_sdk_encoder() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    linked = SpanContext(1, 2, False)
    provider.get_tracer("t").start_span("with link", links=[Link(linked, {"a": "b"})]).end()
    spans = list(exporter.get_finished_spans())
    assert encode_request(spans) == encode_spans(spans).SerializePartialToString()


def test_the_exporter_refuses_after_shutdown() -> None:
    exporter = DirectOtlpSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=0.1)
    exporter.shutdown()
    assert not exporter.export(_spans()).name == "SUCCESS"

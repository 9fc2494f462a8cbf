"""What trace sampling and the exemplar filter change: sampled-out requests write no attempt spans (their
metrics stay whole), and exemplars are off unless ``OTEL_METRICS_EXEMPLAR_FILTER`` asks for them."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from llm_gateway.telemetry import AttemptRecord, RequestRecord, Telemetry, TelemetrySettings
from llm_gateway.telemetry.otel import OtelConfigError, exemplar_filter


def answered_record() -> RequestRecord:
    rec = RequestRecord.begin("req-1", "/v1/chat/completions", "gpt-4o-mini", provider="openai")
    rec.attempts = [AttemptRecord("openai", "gpt-4o-mini", rec.start, 0.1, status=200)]
    rec.prompt_tokens, rec.completion_tokens, rec.duration = 11, 7, 0.2
    return rec


def duration_points(reader: InMemoryMetricReader) -> list[HistogramDataPoint]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "gen_ai.client.operation.duration"
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
    ]


@pytest.mark.parametrize(("ratio", "sampled"), [("0", False), ("1", True)])
def test_a_sampled_out_request_writes_no_attempt_span_but_keeps_its_metrics(ratio: str, sampled: bool) -> None:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
    telemetry = Telemetry.create(
        TelemetrySettings(), env, span_processor=SimpleSpanProcessor(spans), metric_reader=reader
    )
    assert telemetry.otel is not None and telemetry.otel.tracer is not None
    with telemetry.otel.tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER):
        telemetry.record(answered_record())
    telemetry.otel.shutdown()

    names = sorted(span.name for span in spans.get_finished_spans())
    assert names == (["POST /v1/chat/completions", "chat gpt-4o-mini"] if sampled else [])
    (point,) = duration_points(reader)
    assert point.count == 1


def test_exemplars_are_off_unless_asked_for() -> None:
    assert isinstance(exemplar_filter({}), AlwaysOffExemplarFilter)
    assert isinstance(exemplar_filter({"OTEL_METRICS_EXEMPLAR_FILTER": "trace_based"}), TraceBasedExemplarFilter)
    assert isinstance(exemplar_filter({"OTEL_METRICS_EXEMPLAR_FILTER": " Always_On "}), AlwaysOnExemplarFilter)
    with pytest.raises(OtelConfigError, match="OTEL_METRICS_EXEMPLAR_FILTER"):
        exemplar_filter({"OTEL_METRICS_EXEMPLAR_FILTER": "sometimes"})


def test_the_exemplar_filter_reaches_the_meter_provider() -> None:
    reader = InMemoryMetricReader()
    env = {"OTEL_METRICS_EXEMPLAR_FILTER": "always_on"}
    telemetry = Telemetry.create(TelemetrySettings(), env, metric_reader=reader)
    telemetry.record(answered_record())
    (point,) = duration_points(reader)
    assert len(point.exemplars) == 1
    assert telemetry.otel is not None
    telemetry.otel.shutdown()

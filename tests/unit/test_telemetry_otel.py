"""Spans and GenAI metrics from ``Telemetry.record()``, captured by in-memory exporters; OTEL_* parsing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from llm_gateway.telemetry import AttemptRecord, RequestRecord, Telemetry, TelemetrySettings, genai
from llm_gateway.telemetry.otel import OtelConfigError, endpoint, parse_headers, protocol, sampler, setup_otel

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "PROMPT-TEXT"}], "max_tokens": 50}
ANSWER = {
    "id": "chatcmpl-9",
    "model": "claude-3-5-haiku-20241022",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ANSWER-TEXT"}, "finish_reason": "stop"}],
}


@dataclass
class Captured:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[HistogramDataPoint]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        found: list[HistogramDataPoint] = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(
                            point for point in metric.data.data_points if isinstance(point, HistogramDataPoint)
                        )
        return found


def make(settings: TelemetrySettings) -> Captured:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = Telemetry.create(settings, {}, span_processor=SimpleSpanProcessor(spans), metric_reader=reader)
    return Captured(telemetry, spans, reader)


@pytest.fixture
def captured() -> Iterator[Captured]:
    result = make(TelemetrySettings(user_id="plain"))
    yield result
    assert result.telemetry.otel is not None
    result.telemetry.otel.shutdown()


def record(attempts: list[AttemptRecord], **fields: Any) -> RequestRecord:
    base = RequestRecord.begin("req-7", "/v1/chat/completions", "gpt-4o-mini", user_id="user-42", request_body=BODY)
    base.attempts = attempts
    base.duration = 0.6
    for name, value in fields.items():
        setattr(base, name, value)
    return base


def attempt(provider: str, model: str, start: float, duration: float, **fields: Any) -> AttemptRecord:
    return AttemptRecord(provider, model, start, duration, **fields)


def answered(rec_start: float) -> dict[str, Any]:
    return {
        "provider": "anthropic",
        "upstream_model": "claude-3-5-haiku-latest",
        "response_model": "claude-3-5-haiku-20241022",
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "finish_reasons": ("stop",),
        "response_body": ANSWER,
    }


def test_success_writes_one_client_span_with_the_genai_attributes(captured: Captured) -> None:
    rec = record([], provider="openai", upstream_model="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18")
    rec.attempts = [attempt("openai", "gpt-4o-mini", rec.start + 0.01, 0.25, status=200)]
    rec.prompt_tokens, rec.completion_tokens, rec.finish_reasons = 11, 7, ("stop",)
    captured.telemetry.record(rec)

    (span,) = captured.finished()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 50,
        "gateway.attempt": 1,
        "gateway.model_group": "gpt-4o-mini",
        "gateway.user_id": "user-42",
        "http.response.status_code": 200,
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    assert span.start_time == rec.start_ns + 10_000_000
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == 250_000_000


def test_fallback_writes_two_attempt_spans_under_the_server_span(captured: Captured) -> None:
    assert captured.telemetry.otel is not None and captured.telemetry.otel.tracer is not None
    tracer = captured.telemetry.otel.tracer
    with tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER) as server:
        rec = record([], **answered(0.0), cache="miss")
        rec.attempts = [
            attempt("openai", "gpt-4o-mini", rec.start, 0.2, status=500, error="upstream_error"),
            attempt("anthropic", "claude-3-5-haiku-latest", rec.start + 0.2, 0.3, status=200),
        ]
        captured.telemetry.record(rec)

    first, second, root = captured.finished()
    assert root.name == "POST /v1/chat/completions"
    assert {first.parent.span_id, second.parent.span_id} == {server.get_span_context().span_id}  # type: ignore[union-attr]
    assert (first.name, second.name) == ("chat gpt-4o-mini", "chat claude-3-5-haiku-latest")
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes is not None and first.attributes["error.type"] == "http_500"
    assert "gen_ai.usage.input_tokens" not in first.attributes
    assert second.attributes is not None
    assert second.attributes["gateway.attempt"] == 2
    assert second.attributes["gateway.cache"] == "miss"
    assert second.attributes["gen_ai.usage.output_tokens"] == 7
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "error.type" not in second.attributes
    assert dict(root.attributes or {}) == {
        "gateway.request_id": "req-7",
        "gateway.model_group": "gpt-4o-mini",
        "gateway.attempts": 2,
        "gateway.stream": False,
        "gateway.provider": "anthropic",
        "gateway.cache": "miss",
        "gateway.user_id": "user-42",
    }

    durations = captured.points("gen_ai.client.operation.duration")
    assert sorted((p.attributes or {}).get("error.type", "") for p in durations) == ["", "http_500"]
    assert all(tuple(p.explicit_bounds) == genai.DURATION_BUCKETS for p in durations)
    tokens = {(p.attributes or {})["gen_ai.token.type"]: p for p in captured.points("gen_ai.client.token.usage")}
    assert (tokens["input"].sum, tokens["output"].sum) == (11, 7)
    assert tokens["input"].attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "anthropic",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-3-5-haiku-latest",
        "gen_ai.response.model": "claude-3-5-haiku-20241022",
        "gen_ai.token.type": "input",
    }
    assert tuple(tokens["input"].explicit_bounds) == genai.TOKEN_BUCKETS


def test_failure_marks_every_attempt_span_and_records_no_tokens(captured: Captured) -> None:
    rec = record([], status=502, error="all_providers_failed")
    rec.attempts = [
        attempt("openai", "gpt-4o-mini", rec.start, 0.1, status=503, error="upstream_error"),
        attempt("groq", "llama-3.1-8b-instant", rec.start + 0.1, 0.4, error="upstream_timeout"),
    ]
    captured.telemetry.record(rec)

    spans = captured.finished()
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR, StatusCode.ERROR]
    assert [(s.attributes or {})["error.type"] for s in spans] == ["http_503", "upstream_timeout"]
    assert all("gen_ai.response.model" not in (s.attributes or {}) for s in spans)
    assert captured.points("gen_ai.client.token.usage") == []
    assert len(captured.points("gen_ai.client.operation.duration")) == 2


def test_stream_records_time_to_first_chunk(captured: Captured) -> None:
    rec = record([], stream=True, ttft=0.3, **answered(0.0))
    rec.attempts = [attempt("anthropic", "claude-3-5-haiku-latest", rec.start + 0.1, 0.5)]
    captured.telemetry.record(rec)
    (point,) = captured.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.count == 1 and point.sum == pytest.approx(0.2)


def test_content_is_recorded_only_when_switched_on(captured: Captured) -> None:
    rec = record([], **answered(0.0))
    rec.attempts = [attempt("anthropic", "claude-3-5-haiku-latest", rec.start, 0.3)]
    captured.telemetry.record(rec)
    assert "PROMPT-TEXT" not in repr(captured.finished()[0].attributes)
    assert "ANSWER-TEXT" not in repr(captured.finished()[0].attributes)

    with_content = make(TelemetrySettings(record_content=True))
    with_content.telemetry.record(rec)
    attributes = with_content.finished()[0].attributes or {}
    assert "PROMPT-TEXT" in str(attributes["gen_ai.input.messages"])
    assert "ANSWER-TEXT" in str(attributes["gen_ai.output.messages"])
    assert attributes["gateway.user_id"] == genai.user_id_value("user-42", "hash")


def test_export_off_sets_up_nothing() -> None:
    assert setup_otel({}) is None
    assert setup_otel({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}) is None
    assert (
        setup_otel(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
        )
        is None
    )
    telemetry = Telemetry.create(TelemetrySettings(), {})
    assert telemetry.otel is None and not telemetry.tracing and not telemetry.wants_stream_body
    app = Starlette()
    telemetry.install(app)
    assert app.user_middleware == []


def test_record_costs_microseconds_when_export_is_off() -> None:
    telemetry = Telemetry.create(TelemetrySettings(), {})
    records = []
    for _ in range(2000):
        rec = record([], **answered(0.0))
        rec.attempts = [attempt("anthropic", "claude-3-5-haiku-latest", rec.start, 0.3)]
        records.append(rec)
    started = time.perf_counter()
    for rec in records:
        telemetry.record(rec)
    per_record = (time.perf_counter() - started) / len(records)
    assert per_record < 100e-6, f"{per_record * 1e6:.1f} µs per record"


def test_otlp_environment_parsing() -> None:
    assert protocol({}, "TRACES") == "http/protobuf"
    assert protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "TRACES") == "grpc"
    assert (
        protocol(
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, "TRACES"
        )
        == "http/protobuf"
    )
    with pytest.raises(OtelConfigError, match="http/json"):
        protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "TRACES")
    generic = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert endpoint(generic, "TRACES", "http/protobuf") == "http://collector:4318/v1/traces"
    assert endpoint(generic, "METRICS", "http/protobuf") == "http://collector:4318/v1/metrics"
    assert endpoint({**generic, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x"}, "TRACES", "http/protobuf") == (
        "http://t/x"
    )
    assert endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "TRACES", "grpc") == "http://c:4317"
    assert endpoint({}, "TRACES", "grpc") == "http://localhost:4317"
    assert parse_headers("api-key=a%20b, X-Tenant=t1,broken") == {"api-key": "a b", "x-tenant": "t1"}
    assert sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}).get_description() == (
        "TraceIdRatioBased{0.25}"
    )
    with pytest.raises(OtelConfigError, match="OTEL_TRACES_SAMPLER"):
        sampler({"OTEL_TRACES_SAMPLER": "sometimes"})
    with pytest.raises(OtelConfigError, match="OTEL_TRACES_EXPORTER"):
        setup_otel({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_protocol_picks_the_exporter_class() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    from llm_gateway.telemetry.otel import _span_exporters
    from llm_gateway.telemetry.otlp_spans import DirectOtlpSpanExporter

    assert issubclass(DirectOtlpSpanExporter, HttpExporter)  # the SDK's transport, with a direct encoding

    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    for env, expected in (
        (base, DirectOtlpSpanExporter),
        ({**base, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, GrpcExporter),
    ):
        (exporter,) = _span_exporters(env)
        assert type(exporter) is expected
        exporter.shutdown()


async def test_server_span_middleware_continues_the_callers_trace() -> None:
    spans = InMemorySpanExporter()
    telemetry = Telemetry.create(TelemetrySettings(), {}, span_processor=SimpleSpanProcessor(spans))

    async def chat(request: Request) -> JSONResponse:
        rec = RequestRecord.begin("req-1", "/v1/chat/completions", "gpt-4o-mini", provider="openai")
        rec.attempts = [AttemptRecord.begin("openai", "gpt-4o-mini").end(status=200)]
        telemetry.record(rec)
        return JSONResponse({"ok": True})

    async def broken(request: Request) -> JSONResponse:
        return JSONResponse({"error": "x"}, status_code=503)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/broken", broken)])
    telemetry.install(app)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        answer = await client.post(
            "/v1/chat/completions", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}, json={}
        )
        assert answer.status_code == 200
        assert (await client.get("/broken")).status_code == 503

    attempt_span, server, broken_span = spans.get_finished_spans()
    assert server.name == "POST /v1/chat/completions" and server.kind is SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None and format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert attempt_span.parent is not None and attempt_span.parent.span_id == server.context.span_id
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/chat/completions"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["gateway.request_id"] == "req-1"
    assert broken_span.status.status_code is StatusCode.ERROR
    assert broken_span.attributes is not None and broken_span.attributes["error.type"] == "503"
    assert telemetry.otel is not None
    telemetry.otel.shutdown()


def test_export_off_never_imports_the_sdk() -> None:
    script = (
        "import sys\n"
        "from llm_gateway.telemetry import RequestRecord, Telemetry, TelemetrySettings\n"
        "telemetry = Telemetry.create(TelemetrySettings(), {'OTEL_SERVICE_NAME': 'x'})\n"
        "telemetry.record(RequestRecord.begin('r', '/v1/chat/completions', 'gpt-4o-mini'))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"

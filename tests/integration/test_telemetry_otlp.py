"""Real OTLP exporters, configured only through OTEL_* variables, sending to receivers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_gateway.telemetry import AttemptRecord, RequestRecord, Telemetry, TelemetrySettings
from tests.fakes.collectors import FakeOtlpGrpc, FakeOtlpHttp, ReceivedSpan, wait_for

pytestmark = pytest.mark.integration

CLIENT = 3  # SpanKind.SPAN_KIND_CLIENT in the OTLP protobuf
ERROR = 2  # Status.STATUS_CODE_ERROR


@pytest.fixture
def http_receiver() -> Iterator[FakeOtlpHttp]:
    with FakeOtlpHttp() as receiver:
        yield receiver


@pytest.fixture
def grpc_receiver() -> Iterator[FakeOtlpGrpc]:
    with FakeOtlpGrpc() as receiver:
        yield receiver


def fallback() -> RequestRecord:
    rec = RequestRecord.begin(
        "req-otlp",
        "/v1/chat/completions",
        "gpt-4o-mini",
        user_id="user-42",
        provider="anthropic",
        upstream_model="claude-3-5-haiku-latest",
        response_model="claude-3-5-haiku-20241022",
        prompt_tokens=11,
        completion_tokens=7,
        finish_reasons=("stop",),
        request_body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2},
    )
    rec.attempts = [
        AttemptRecord("openai", "gpt-4o-mini", rec.start, 0.2, status=500, error="upstream_error"),
        AttemptRecord("anthropic", "claude-3-5-haiku-latest", rec.start + 0.2, 0.3, status=200),
    ]
    rec.duration = 0.51
    return rec


async def export_one(env: dict[str, str]) -> Telemetry:
    telemetry = Telemetry.create(TelemetrySettings(service_version="9.9.9"), env)
    assert telemetry.tracing and telemetry.otel is not None
    telemetry.record(fallback())
    telemetry.otel.force_flush(5000)
    return telemetry


def check_spans(spans: list[ReceivedSpan]) -> None:
    first, second = sorted(spans, key=lambda span: span.attributes["gateway.attempt"])
    assert (first.name, second.name) == ("chat gpt-4o-mini", "chat claude-3-5-haiku-latest")
    assert first.kind == second.kind == CLIENT
    assert first.status_code == ERROR and first.attributes["error.type"] == "http_500"
    assert second.attributes["gen_ai.provider.name"] == "anthropic"
    assert second.attributes["gen_ai.system"] == "anthropic"
    assert second.attributes["gen_ai.operation.name"] == "chat"
    assert second.attributes["gen_ai.request.model"] == "claude-3-5-haiku-latest"
    assert second.attributes["gen_ai.response.model"] == "claude-3-5-haiku-20241022"
    assert second.attributes["gen_ai.request.temperature"] == 0.2
    assert second.attributes["gen_ai.usage.input_tokens"] == 11
    assert second.attributes["gen_ai.usage.output_tokens"] == 7
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert second.attributes["gateway.user_id"] != "user-42"  # hashed by default
    assert second.resource["service.name"] == "gateway-under-test"
    assert second.resource["service.version"] == "9.9.9"
    assert second.resource["deployment.environment"] == "test"


async def test_spans_and_genai_metrics_over_http_protobuf(http_receiver: FakeOtlpHttp) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme,authorization=Bearer%20collector-token",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
    }
    telemetry = await export_one(env)
    assert wait_for(lambda: len(http_receiver.spans) == 2 and bool(http_receiver.metric_names))
    check_spans(http_receiver.spans)
    assert {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"} <= http_receiver.metric_names
    headers = http_receiver.headers[0]
    assert headers["x-tenant"] == "acme" and headers["authorization"] == "Bearer collector-token"
    assert headers["content-type"] == "application/x-protobuf" and headers["content-encoding"] == "gzip"
    await telemetry.aclose()


async def test_spans_over_grpc(grpc_receiver: FakeOtlpGrpc) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_receiver.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme",
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "OTEL_METRICS_EXPORTER": "none",
    }
    telemetry = await export_one(env)
    assert telemetry.otel is not None and telemetry.otel.meter_provider is None
    assert wait_for(lambda: len(grpc_receiver.spans) == 2)
    check_spans(grpc_receiver.spans)
    assert grpc_receiver.headers[0]["x-tenant"] == "acme"
    await telemetry.aclose()

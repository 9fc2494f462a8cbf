"""Observability through the gateway, as a client sees it: spans and GenAI metrics (in-memory exporters
injected with ``create_app(config, telemetry=...)``), a real OTLP exporter configured only through the
``OTEL_*`` variables given to the gateway, and ``GET /metrics`` counters moving as requests are served.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from llm_gateway.app import build_telemetry
from llm_gateway.settings import load_settings
from llm_gateway.telemetry.genai import user_id_value
from tests.conftest import StartGateway
from tests.fakes import Fail, FakeProvider
from tests.fakes.collectors import FakeOtlpGrpc, FakeOtlpHttp, ReceivedSpan, wait_for
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.pricing_support import spend_usd

pytestmark = pytest.mark.integration

PROMPT = "Name a colour, observability-e2e-prompt-7f3a."
MESSAGES = [{"role": "user", "content": PROMPT}]
CHAT = "POST /v1/chat/completions"
NO_STORE = {"cache-control": "no-store"}


@dataclass
class Traced:
    gateway: GatewayServer
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    http: httpx.Client
    salt: str

    def chat(self, **fields: Any) -> httpx.Response:
        return self.http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES, **fields})

    def request_spans(self, count: int) -> tuple[ReadableSpan, list[ReadableSpan]]:
        """The request's server span (it ends after the answer is sent: wait for it) and its attempt spans."""
        assert wait_for(lambda: any(s.kind is SpanKind.SERVER for s in self.spans.get_finished_spans()), 5)
        finished = self.spans.get_finished_spans()
        (server,) = [s for s in finished if s.kind is SpanKind.SERVER]
        attempts = sorted((s for s in finished if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)
        assert len(attempts) == count
        for span in attempts:
            assert span.parent is not None and span.parent.span_id == server.context.span_id
            assert span.context.trace_id == server.context.trace_id
        return server, attempts

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def traced(start_gateway: StartGateway, fake_env: dict[str, str]) -> Iterator[Traced]:
    """A gateway whose telemetry exports to memory, built from the gateway's own settings."""
    env = {**fake_env, "TELEMETRY_USER_ID_SALT": "e2e-salt"}
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = build_telemetry(load_settings(env), span_processor=SimpleSpanProcessor(spans), metric_reader=reader)
    gateway = start_gateway(env, telemetry=telemetry)
    key = create_key(gateway.base_url, "alice")
    assert wait_for(lambda: len(spans.get_finished_spans()) == 1, 5)  # the admin request's server span
    spans.clear()
    with httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {key}"}, timeout=20) as http:
        yield Traced(gateway, spans, reader, http, "e2e-salt")


def no_content(span: ReadableSpan) -> None:
    """Prompts and answers stay off spans unless TELEMETRY_RECORD_CONTENT turns them on."""
    text = repr(dict(span.attributes or {}))
    assert "observability-e2e-prompt" not in text and "Hello from" not in text
    assert not any(name in (span.attributes or {}) for name in ("gen_ai.input.messages", "gen_ai.output.messages"))


def test_a_success_has_a_server_span_and_one_attempt_span_with_the_genai_attributes(traced: Traced) -> None:
    response = traced.chat(max_tokens=50, temperature=0.2)
    assert response.status_code == 200, response.text

    server, (attempt,) = traced.request_spans(1)
    hashed = user_id_value("alice", "hash", traced.salt.encode())
    assert server.name == CHAT
    assert server.status.status_code is StatusCode.UNSET
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "gateway.request_id": response.headers["x-request-id"],
        "gateway.model_group": "gpt-4o-mini",
        "gateway.attempts": 1,
        "gateway.stream": False,
        "gateway.provider": "openai",
        "gateway.cache": "miss",
        "gateway.user_id": hashed,
        "gateway.cost_usd": float(spend_usd("gpt-4o-mini", (11, 7))),
    }
    assert attempt.name == "chat gpt-4o-mini"
    assert attempt.status.status_code is StatusCode.UNSET
    assert dict(attempt.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": response.json()["model"],
        "gen_ai.response.id": response.json()["id"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "gateway.attempt": 1,
        "gateway.model_group": "gpt-4o-mini",
        "gateway.cache": "miss",
        "gateway.user_id": hashed,
        "http.response.status_code": 200,
    }
    no_content(server)
    no_content(attempt)

    (duration,) = traced.points("gen_ai.client.operation.duration")
    assert isinstance(duration, HistogramDataPoint) and duration.count == 1
    assert dict(duration.attributes or {})["gen_ai.provider.name"] == "openai"
    usage = {dict(p.attributes or {})["gen_ai.token.type"]: p.sum for p in traced.points("gen_ai.client.token.usage")}
    assert usage == {"input": 11, "output": 7}


def test_a_fallback_has_two_attempt_spans_the_first_with_its_error_type(
    traced: Traced, fakes: dict[str, FakeProvider]
) -> None:
    fakes["openai"].push(Fail(500))
    response = traced.chat()
    assert response.status_code == 200 and response.headers["x-gateway-provider"] == "anthropic"

    server, (failed, answered) = traced.request_spans(2)
    assert (server.attributes or {})["gateway.attempts"] == 2
    assert (server.attributes or {})["gateway.provider"] == "anthropic"
    assert failed.name == "chat gpt-4o-mini"
    assert failed.status.status_code is StatusCode.ERROR
    failed_attributes = dict(failed.attributes or {})
    assert failed_attributes["error.type"] == "http_500"
    assert failed_attributes["gen_ai.provider.name"] == "openai"
    assert failed_attributes["gateway.attempt"] == 1
    assert failed_attributes["http.response.status_code"] == 500
    assert "gen_ai.usage.input_tokens" not in failed_attributes and "gen_ai.response.model" not in failed_attributes

    assert answered.name == "chat claude-3-5-haiku-latest"
    assert answered.status.status_code is StatusCode.UNSET
    answered_attributes = dict(answered.attributes or {})
    assert "error.type" not in answered_attributes
    assert answered_attributes["gen_ai.system"] == "anthropic"
    assert answered_attributes["gen_ai.request.model"] == "claude-3-5-haiku-latest"
    assert answered_attributes["gateway.attempt"] == 2
    assert answered_attributes["gen_ai.usage.input_tokens"] == 11
    assert answered_attributes["gen_ai.usage.output_tokens"] == 7
    assert failed.end_time is not None and answered.start_time is not None
    assert failed.end_time <= answered.start_time

    durations = {
        dict(p.attributes or {})["gen_ai.provider.name"]: dict(p.attributes or {}).get("error.type")
        for p in traced.points("gen_ai.client.operation.duration")
    }
    assert durations == {"openai": "http_500", "anthropic": None}


def test_a_failure_has_an_error_span_per_attempt_and_an_error_server_span(
    traced: Traced, fakes: dict[str, FakeProvider]
) -> None:
    for fake in fakes.values():
        fake.push(Fail(503))
    response = traced.chat()
    assert response.status_code == 502

    server, attempts = traced.request_spans(3)
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["error.type"] == "502"
    assert (server.attributes or {})["gateway.error"] == "all_providers_failed"
    assert (server.attributes or {})["http.response.status_code"] == 502
    assert [(s.attributes or {})["gen_ai.provider.name"] for s in attempts] == ["openai", "anthropic", "groq"]
    assert [(s.attributes or {})["error.type"] for s in attempts] == ["http_503"] * 3
    assert all(s.status.status_code is StatusCode.ERROR for s in attempts)
    assert traced.points("gen_ai.client.token.usage") == []


def test_a_request_refused_before_the_pipeline_still_gets_its_server_span_attributes(traced: Traced) -> None:
    response = traced.http.post("/v1/chat/completions", json={"model": "no-such-model", "messages": MESSAGES})
    assert response.status_code == 404

    server, _ = traced.request_spans(0)
    attributes = dict(server.attributes or {})
    assert attributes["gateway.error"] == "model_not_found"
    assert attributes["gateway.request_id"] == response.headers["x-request-id"]
    assert attributes["gateway.attempts"] == 0
    assert attributes["gateway.user_id"] == user_id_value("alice", "hash", traced.salt.encode())


def test_a_stream_is_traced_when_it_ends_with_its_time_to_first_chunk(traced: Traced) -> None:
    with traced.http.stream(
        "POST", "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    ) as response:
        assert response.status_code == 200
        body = response.read()
    assert body.endswith(b"data: [DONE]\n\n")

    assert wait_for(lambda: len(traced.spans.get_finished_spans()) == 2, 5)
    server, (attempt,) = traced.request_spans(1)
    assert (server.attributes or {})["gateway.stream"] is True
    assert (server.attributes or {})["gateway.provider"] == "openai"
    attributes = dict(attempt.attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == 11 and attributes["gen_ai.usage.output_tokens"] == 7
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    no_content(attempt)
    (first_chunk,) = traced.points("gen_ai.client.operation.time_to_first_chunk")
    assert isinstance(first_chunk, HistogramDataPoint) and first_chunk.count == 1


# -- a real OTLP exporter, configured by OTEL_* only ----------------------------------------------------


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_otlp_export_is_configured_by_the_standard_variables_alone(
    fake_env: dict[str, str], fakes: dict[str, FakeProvider], protocol: str
) -> None:
    receiver: FakeOtlpHttp | FakeOtlpGrpc = FakeOtlpHttp() if protocol == "http/protobuf" else FakeOtlpGrpc()
    with receiver:  # outlives the gateway, which flushes its exporters as it stops
        env = {
            **fake_env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_SERVICE_NAME": "gateway-e2e",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        }
        with GatewayServer(env) as gateway:
            key = create_key(gateway.base_url, "bob")
            fakes["openai"].push(Fail(429))
            response = httpx.post(
                f"{gateway.base_url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}", "traceparent": TRACEPARENT},
                json={"model": "gpt-4o-mini", "messages": MESSAGES},
                timeout=20,
            )
            assert response.status_code == 200
            assert wait_for(lambda: len(chat_spans(receiver)) == 3, 10), receiver.spans
            assert wait_for(lambda: GENAI_METRICS <= receiver.metric_names, 10), receiver.metric_names

    (server,) = [span for span in chat_spans(receiver) if span.kind != CLIENT]
    assert server.name == CHAT
    assert server.parent_span_id == PARENT_SPAN_ID  # the caller's traceparent was continued
    assert server.resource["service.name"] == "gateway-e2e"
    assert server.resource["deployment.environment"] == "test"
    attempts = sorted(
        (s for s in chat_spans(receiver) if s.kind == CLIENT), key=lambda s: s.attributes["gateway.attempt"]
    )
    assert [s.parent_span_id for s in attempts] == [server.span_id] * 2
    assert [s.attributes["gen_ai.provider.name"] for s in attempts] == ["openai", "anthropic"]
    assert attempts[0].attributes["error.type"] == "http_429" and attempts[0].status_code == OTLP_ERROR
    assert attempts[1].attributes["gen_ai.usage.output_tokens"] == 7
    assert "error.type" not in attempts[1].attributes


def chat_spans(receiver: FakeOtlpHttp | FakeOtlpGrpc) -> list[ReceivedSpan]:
    return [span for span in receiver.spans if span.trace_id == TRACE_ID]


GENAI_METRICS = {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
CLIENT = 3  # SpanKind.SPAN_KIND_CLIENT in the OTLP protobuf
OTLP_ERROR = 2  # Status.STATUS_CODE_ERROR


# -- GET /metrics --------------------------------------------------------------------------------------


class Scrape:
    def __init__(self, text: str) -> None:
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum over the samples named ``name`` whose labels include ``labels``."""
        return sum(
            sample.value for sample in self.samples if sample.name == name and labels.items() <= sample.labels.items()
        )


def scrape(gateway: GatewayServer) -> Scrape:
    response = httpx.get(f"{gateway.base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


def test_metrics_count_requests_tokens_cache_fallbacks_errors_refusals_and_first_tokens(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    key = create_key(gateway.base_url, "carol")
    before = scrape(gateway)
    assert before.value("llm_gateway_requests_total") == 0
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    with httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {key}"}, timeout=20) as http:
        assert http.post("/v1/chat/completions", json=body).headers["x-gateway-cache"] == "miss"
        assert http.post("/v1/chat/completions", json=body).headers["x-gateway-cache"] == "hit"
        fakes["openai"].push(Fail(500))
        fallback = http.post("/v1/chat/completions", json=body, headers=NO_STORE)
        assert fallback.headers["x-gateway-provider"] == "anthropic"
        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=NO_STORE) as stream:
            stream.read()
        for fake in fakes.values():
            fake.push(Fail(503))
        assert http.post("/v1/chat/completions", json=body, headers=NO_STORE).status_code == 502

    limited = create_key(gateway.base_url, "dave", rate_limit_per_minute=1)
    with httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {limited}"}, timeout=20) as http:
        assert http.post("/v1/chat/completions", json=body, headers=NO_STORE).status_code == 200
        refused = http.post("/v1/chat/completions", json=body, headers=NO_STORE)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    with httpx.Client(base_url=gateway.base_url, timeout=20) as http:  # refused before the pipeline
        wrong_key = {"authorization": "Bearer sk-gw-nosuchkey-0123456789abcdef0123456789"}
        assert http.post("/v1/chat/completions", json=body, headers=wrong_key).status_code == 401
        as_json = {"content-type": "application/json"}
        assert http.post("/chat/completions", content=b"{not json", headers={**wrong_key, **as_json}).status_code == 401
        assert http.post("/v1/chat/completions", content=b"{not json", headers=as_json).status_code == 400
        assert http.post("/v1/chat/completions", json={**body, "model": "no-such-model"}).status_code == 404
    poor = create_key(gateway.base_url, "erin", monthly_token_budget=5)
    refused = httpx.post(
        f"{gateway.base_url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {poor}"}, timeout=20
    )
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"

    assert wait_for(lambda: scrape(gateway).value("llm_gateway_requests_total") == 12, 5)  # a stream: at its end
    after = scrape(gateway)
    route = {"route": "/v1/chat/completions", "model": "gpt-4o-mini"}
    assert after.value("llm_gateway_requests_total", **route, provider="openai", status="200") == 3
    assert after.value("llm_gateway_requests_total", **route, provider="cache", status="200") == 1
    assert after.value("llm_gateway_requests_total", **route, provider="anthropic", status="200") == 1
    assert after.value("llm_gateway_requests_total", **route, status="502") == 1
    assert after.value("llm_gateway_requests_total", **route, status="429") == 2
    assert after.value("llm_gateway_tokens_total", provider="openai", direction="input") == 33
    assert after.value("llm_gateway_tokens_total", provider="openai", direction="output") == 21
    assert after.value("llm_gateway_tokens_total", provider="anthropic", direction="output") == 7
    assert after.value("llm_gateway_cache_lookups_total", result="hit") == 1
    assert after.value("llm_gateway_cache_lookups_total", result="miss") == 1
    assert after.value("llm_gateway_fallbacks_total", provider="openai") == 2  # the fallback, and the 502's two
    assert after.value("llm_gateway_upstream_errors_total", provider="openai", kind="http_500") == 1
    assert after.value("llm_gateway_upstream_errors_total", provider="groq", kind="http_503") == 1
    assert after.value("llm_gateway_refusals_total", reason="rate_limit") == 1
    assert after.value("llm_gateway_refusals_total", reason="budget") == 1
    assert after.value("llm_gateway_time_to_first_token_seconds_count", provider="openai") == 1
    early = {"route": "/v1/chat/completions", "model": "unknown", "provider": "none"}
    assert after.value("llm_gateway_requests_total", **early, status="401") == 2
    assert after.value("llm_gateway_requests_total", **early, status="400") == 1
    assert after.value("llm_gateway_requests_total", **early, status="404") == 1
    assert after.value("llm_gateway_request_duration_seconds_count") == 12
    assert after.value("llm_gateway_overhead_seconds_count") == 12
    assert after.value("llm_gateway_upstream_duration_seconds_count", provider="openai") == 3

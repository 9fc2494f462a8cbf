"""Prometheus metrics from ``Telemetry.record()`` and their ``GET /metrics`` exposition."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from llm_gateway.api import metrics as metrics_route
from llm_gateway.telemetry import AttemptRecord, RequestRecord, Telemetry, TelemetrySettings
from llm_gateway.telemetry.metrics import MAX_MODELS, GatewayMetrics

ROUTE = "/v1/chat/completions"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics.exposition()[0].decode()).get((name, frozenset(labels.items())))


def request(model: str = "gpt-4o-mini", **fields: Any) -> RequestRecord:
    record = RequestRecord.begin("req", ROUTE, model)
    for name, field_value in fields.items():
        setattr(record, name, field_value)
    return record


def served(record: RequestRecord) -> RequestRecord:
    record.provider, record.upstream_model = "anthropic", "claude-3-5-haiku-latest"
    record.prompt_tokens, record.completion_tokens = 11, 7
    record.attempts = [
        AttemptRecord("openai", "gpt-4o-mini", record.start, 0.2, status=500, error="upstream_error"),
        AttemptRecord("anthropic", "claude-3-5-haiku-latest", record.start + 0.2, 0.3, status=200),
    ]
    record.duration = 0.502
    return record


def test_a_fallback_moves_requests_latency_tokens_fallbacks_and_errors() -> None:
    telemetry = Telemetry.create(TelemetrySettings(), {})
    telemetry.record(served(request(cache="miss")))
    m = telemetry.metrics
    labels = {"route": ROUTE, "model": "gpt-4o-mini", "provider": "anthropic"}
    assert value(m, "llm_gateway_requests_total", **labels, status="200") == 1
    assert value(m, "llm_gateway_request_duration_seconds_count", **labels) == 1
    assert value(m, "llm_gateway_request_duration_seconds_sum", **labels) == pytest.approx(0.502)
    upstream = {"provider": "anthropic", "model": "gpt-4o-mini"}
    assert value(m, "llm_gateway_upstream_duration_seconds_sum", **upstream) == pytest.approx(0.5)
    assert value(m, "llm_gateway_overhead_seconds_sum", route=ROUTE) == pytest.approx(0.002)
    assert value(m, "llm_gateway_tokens_total", model="gpt-4o-mini", provider="anthropic", direction="input") == 11
    assert value(m, "llm_gateway_tokens_total", model="gpt-4o-mini", provider="anthropic", direction="output") == 7
    assert value(m, "llm_gateway_cache_lookups_total", model="gpt-4o-mini", result="miss") == 1
    assert value(m, "llm_gateway_fallbacks_total", model="gpt-4o-mini", provider="openai") == 1
    assert value(m, "llm_gateway_upstream_errors_total", provider="openai", kind="http_500") == 1


def test_cache_hits_refusals_and_stream_time_to_first_token() -> None:
    telemetry = Telemetry.create(TelemetrySettings(), {})
    telemetry.record(request(cache="hit", duration=0.003))
    telemetry.record(request(status=429, error="rate_limit_exceeded", duration=0.001))
    telemetry.record(request(status=429, error="insufficient_quota", duration=0.001))
    telemetry.record(served(request(stream=True, ttft=0.25)))
    m = telemetry.metrics
    assert value(m, "llm_gateway_cache_lookups_total", model="gpt-4o-mini", result="hit") == 1
    assert value(m, "llm_gateway_requests_total", route=ROUTE, model="gpt-4o-mini", provider="cache", status="200") == 1
    assert value(m, "llm_gateway_refusals_total", reason="rate_limit") == 1
    assert value(m, "llm_gateway_refusals_total", reason="budget") == 1
    assert value(m, "llm_gateway_requests_total", route=ROUTE, model="gpt-4o-mini", provider="none", status="429") == 2
    ttft = {"model": "gpt-4o-mini", "provider": "anthropic"}
    assert value(m, "llm_gateway_time_to_first_token_seconds_sum", **ttft) == pytest.approx(0.25)


def test_model_label_is_capped() -> None:
    m = GatewayMetrics()
    for index in range(MAX_MODELS + 5):
        m.observe(request(model=f"made-up-{index}", status=404, error="model_not_found", duration=0.001))
    assert value(m, "llm_gateway_requests_total", route=ROUTE, model="other", provider="none", status="404") == 5
    assert value(m, "llm_gateway_requests_total", route=ROUTE, model="made-up-0", provider="none", status="404") == 1


def test_label_children_are_cached() -> None:
    m = GatewayMetrics()
    assert m.requests(ROUTE, "a", "b", "200") is m.requests(ROUTE, "a", "b", "200")


def test_multiprocess_mode_needs_the_variable_in_the_environment(tmp_path: Any) -> None:
    # This test process imported prometheus_client without PROMETHEUS_MULTIPROC_DIR.
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        GatewayMetrics(multiproc_dir=str(tmp_path))


async def test_metrics_route_serves_the_exposition() -> None:
    telemetry = Telemetry.create(TelemetrySettings(), {})
    app = FastAPI()
    app.include_router(metrics_route.router)
    app.state.telemetry = telemetry
    telemetry.record(served(request()))
    telemetry.record(served(request()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        text = await client.get("/metrics")
        open_metrics = await client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    parsed = samples(text.text)
    key = (
        "llm_gateway_requests_total",
        frozenset({"route": ROUTE, "model": "gpt-4o-mini", "provider": "anthropic", "status": "200"}.items()),
    )
    assert parsed[key] == 2
    assert ("llm_gateway_helicone_queue_depth", frozenset()) in parsed
    assert any(name == "process_resident_memory_bytes" for name, _ in parsed)
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")

"""Helicone and the OTLP collector down (refusing) or slow (never answering in time): requests do not notice.

The same 30 requests go through a gateway without exporters and through gateways whose Helicone
and OTLP endpoints are a closed port or a server that sleeps 5 s per call; the median latencies
must stay alike and no single request may come near the collectors' delay.
Protection: both exports run off the hot path (Helicone's bounded queue and background sender,
OpenTelemetry's BatchSpanProcessor and periodic metric reader); awaited inline, the slow case
would add about 5 s to every request.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.fakes.collectors import FakeHelicone, Received, _ThreadedHttpServer, closed_port_url, wait_for
from tests.harness import GatewayServer

pytestmark = pytest.mark.integration

REQUESTS = 30
COLLECTOR_DELAY = 5.0
# Anonymous callers, no cache (every request goes the whole way); exports while the requests run.
COMMON = {"ANON_RATE_LIMIT_PER_MINUTE": "1000", "CACHE_ENABLED": "false"}
FAST_EXPORT = {**COMMON, "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "500"}


class SleepingCollector(_ThreadedHttpServer):
    """Accepts any POST (OTLP/HTTP ``/v1/traces``, ``/v1/metrics``) and answers only after ``delay`` s."""

    name = "sleeping-collector"

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._sleep)

    async def _sleep(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self._keep(Received(request.method, request.path, dict(request.headers), None, raw))
        await asyncio.sleep(self.delay)
        return web.Response(status=200)


@pytest.fixture
def slow_helicone() -> Iterator[FakeHelicone]:
    with FakeHelicone("slow", delay=COLLECTOR_DELAY) as helicone:
        yield helicone


@pytest.fixture
def slow_collector() -> Iterator[SleepingCollector]:
    with SleepingCollector(COLLECTOR_DELAY) as collector:
        yield collector


def latencies(gateway: GatewayServer) -> list[float]:
    measured = []
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for index in range(REQUESTS):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hello {index}"}]}
            started = time.perf_counter()
            response = client.post(
                "/v1/chat/completions",
                json=body,
            )
            measured.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return measured


def assert_stops_in_time(gateway: GatewayServer) -> None:
    """Shutdown flushes Helicone and the exporters within their bounds (2 s, OTEL_SHUTDOWN_SECONDS), not
    for as long as a dead collector makes them retry."""
    started = time.monotonic()
    gateway.stop()  # waits up to 10 s for the server thread
    assert time.monotonic() - started < 8.0


def assert_unaffected(baseline: list[float], faulty: list[float]) -> None:
    base_p50, faulty_p50 = statistics.median(baseline), statistics.median(faulty)
    # Loopback requests take a few ms; the slack absorbs scheduling noise, not a collector's delay.
    assert faulty_p50 <= 2 * base_p50 + 0.02, f"p50 {faulty_p50 * 1000:.1f} ms vs {base_p50 * 1000:.1f} ms"
    assert max(faulty) < 1.0, f"slowest request {max(faulty):.2f} s"


@pytest.fixture
def baseline(start_gateway: Any, fake_env: dict[str, str]) -> list[float]:
    gateway: GatewayServer = start_gateway({**fake_env, **COMMON})
    return latencies(gateway)


def test_helicone_and_otlp_refusing_connections_do_not_slow_requests(
    start_gateway: Any, fake_env: dict[str, str], baseline: list[float]
) -> None:
    env = {
        **fake_env,
        **FAST_EXPORT,
        "HELICONE_API_KEY": "sk-helicone-test-key",
        "HELICONE_BASE_URL": closed_port_url(),
        "OTEL_EXPORTER_OTLP_ENDPOINT": closed_port_url(),
    }
    gateway: GatewayServer = start_gateway(env)
    assert_unaffected(baseline, latencies(gateway))
    # The fault was met: Helicone logs were given up on, and counted.
    assert wait_for(lambda: "llm_gateway_helicone_dropped" in httpx.get(f"{gateway.base_url}/metrics").text)
    assert_stops_in_time(gateway)


def test_helicone_and_otlp_that_never_answer_in_time_do_not_slow_requests(
    start_gateway: Any,
    fake_env: dict[str, str],
    baseline: list[float],
    slow_helicone: FakeHelicone,
    slow_collector: SleepingCollector,
) -> None:
    env = {
        **fake_env,
        **FAST_EXPORT,
        "HELICONE_API_KEY": slow_helicone.api_key,
        "HELICONE_BASE_URL": slow_helicone.url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": slow_collector.url,
    }
    gateway: GatewayServer = start_gateway(env)
    assert_unaffected(baseline, latencies(gateway))
    # The fault was met: both collectors were called (and kept the gateway's exporters waiting).
    assert wait_for(lambda: bool(slow_helicone.logs) and bool(slow_collector.received))
    assert_stops_in_time(gateway)

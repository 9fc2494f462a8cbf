"""Helicone through the gateway: a fake collector receives the documented log of a plain and of a streamed
request (its answer assembled); a Helicone that sleeps 5 s per call or refuses connections leaves the
gateway's latency where it is without Helicone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartGateway
from tests.fakes import FakeProvider
from tests.fakes.collectors import FakeHelicone, HeliconeMode, closed_port_url, wait_for
from tests.harness import GatewayServer
from tests.identity_support import create_key

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Say hello."}]
NO_STORE = {"cache-control": "no-store"}
WARM_UP, MEASURED = 10, 50
# How much slower the median request may be with a slow or unreachable Helicone than without one.
P50_TOLERANCE_SECONDS = 0.005
SLOW_HELICONE_SECONDS = 5.0  # per call, as slow as HELICONE_TIMEOUT_SECONDS lets it be


@pytest.fixture
def helicone() -> Iterator[FakeHelicone]:
    with FakeHelicone() as fake:
        yield fake


def helicone_env(fake_env: dict[str, str], url: str) -> dict[str, str]:
    return {**fake_env, "HELICONE_API_KEY": "sk-helicone-test-key", "HELICONE_BASE_URL": url}


def stream_text(body: bytes) -> str:
    """The assistant text of an SSE body, as a client joins it."""
    text = ""
    for line in body.split(b"\n\n"):
        if line.startswith(b"data: {"):
            for choice in orjson.loads(line[6:]).get("choices") or ():
                text += choice["delta"].get("content") or ""
    return text


def totals(usage: dict[str, int]) -> tuple[int, int, int]:
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


def test_helicone_receives_the_documented_log_of_a_plain_and_a_streamed_request(
    start_gateway: StartGateway, fake_env: dict[str, str], helicone: FakeHelicone
) -> None:
    gateway = start_gateway(helicone_env(fake_env, helicone.url))
    key = create_key(gateway.base_url, "frank")
    started = time.time()
    with httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {key}"}, timeout=20) as http:
        plain = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 9})
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as streamed:
            streamed_body = streamed.read()
    ended = time.time()
    assert plain.status_code == 200 and streamed.status_code == 200
    assert wait_for(lambda: len(helicone.logs) == 2, 10), helicone.logs
    logs = {log.headers["helicone-property-request-id"]: log for log in helicone.logs}

    first = logs[plain.headers["x-request-id"]]
    assert first.method == "POST" and first.path == "/custom/v1/log"
    assert first.headers["authorization"] == "Bearer sk-helicone-test-key"
    assert first.headers["helicone-user-id"] == "frank"
    assert first.headers["helicone-property-provider"] == "openai"
    assert first.headers["helicone-property-model-group"] == "gpt-4o-mini"
    assert first.headers["helicone-property-attempts"] == "1"
    assert first.headers["helicone-property-stream"] == "false"
    assert first.headers["helicone-property-cache"] == "miss"
    assert first.body["providerRequest"] == {
        "url": "custom-model-nopath",
        "json": {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 9, "stream": False},
        "meta": {},
    }
    assert first.body["providerResponse"] == {"headers": {}, "status": 200, "json": plain.json()}
    assert totals(first.body["providerResponse"]["json"]["usage"]) == (11, 7, 18)
    timing = first.body["timing"]
    assert set(timing) == {"startTime", "endTime"}  # time to first token is for streams
    start, end = (timing[name]["seconds"] + timing[name]["milliseconds"] / 1000 for name in ("startTime", "endTime"))
    assert started - 1 <= start <= end <= ended + 1

    second = logs[streamed.headers["x-request-id"]]
    assert second.headers["helicone-user-id"] == "frank"
    assert second.headers["helicone-property-provider"] == "openai"
    assert second.headers["helicone-property-stream"] == "true"
    assert second.body["providerRequest"]["json"] == {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": False}
    answer = second.body["providerResponse"]["json"]
    assert second.body["providerResponse"]["status"] == 200
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == stream_text(streamed_body) == "Hello from openai"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert totals(answer["usage"]) == (11, 7, 18)
    timing = second.body["timing"]
    start, end = (timing[name]["seconds"] + timing[name]["milliseconds"] / 1000 for name in ("startTime", "endTime"))
    assert started - 1 <= start <= end <= ended + 1
    assert 0 <= timing["timeToFirstToken"] <= (end - start) * 1000 + 1


def paired_latencies(without: GatewayServer, with_helicone: GatewayServer) -> tuple[list[float], list[float]]:
    """Seconds per request, over ``MEASURED`` sequential requests to each gateway, taken in turns so that
    both runs see the same machine load; every request reaches the upstream (no-store)."""
    clients = [
        httpx.Client(
            base_url=gateway.base_url,
            headers={"authorization": f"Bearer {create_key(gateway.base_url, 'latency')}", **NO_STORE},
            timeout=20,
        )
        for gateway in (without, with_helicone)
    ]
    measured: tuple[list[float], list[float]] = ([], [])
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    try:
        for index in range(WARM_UP + MEASURED):
            for client, times in zip(clients, measured, strict=True):
                began = time.perf_counter()
                response = client.post("/v1/chat/completions", json=body)
                elapsed = time.perf_counter() - began
                assert response.status_code == 200, response.text
                if index >= WARM_UP:
                    times.append(elapsed)
    finally:
        for client in clients:
            client.close()
    return measured


def metric(gateway: GatewayServer, name: str, **labels: str) -> float:
    text = httpx.get(f"{gateway.base_url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


@pytest.mark.parametrize("mode", ["slow", "down"])
def test_a_slow_or_unreachable_helicone_costs_the_requests_nothing(
    start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider], mode: HeliconeMode | str
) -> None:
    with FakeHelicone("slow", delay=SLOW_HELICONE_SECONDS) as slow:
        url = slow.url if mode == "slow" else closed_port_url()
        gateway = start_gateway(helicone_env(fake_env, url))
        without, with_helicone = paired_latencies(start_gateway(fake_env), gateway)
        if mode == "slow":
            assert wait_for(lambda: len(slow.logs) >= 1, 5)  # the worker is calling it, and waiting
        else:
            assert wait_for(lambda: metric(gateway, "llm_gateway_helicone_dropped_total", reason="unreachable") > 0, 10)
        gateway.stop()  # while the slow collector still holds its calls

    p50_without, p50_with = statistics.median(without), statistics.median(with_helicone)
    print(
        f"\nhelicone {mode}: p50 {p50_with * 1000:.2f} ms (without Helicone {p50_without * 1000:.2f} ms), "
        f"max {max(with_helicone) * 1000:.2f} ms (without {max(without) * 1000:.2f} ms)"
    )
    assert p50_with <= p50_without + P50_TOLERANCE_SECONDS
    # Not one request waited for the slow collector's 5 s (the bound leaves room for a busy machine's stalls).
    assert max(with_helicone) < SLOW_HELICONE_SECONDS - 1

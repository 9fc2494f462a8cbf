"""What tests that talk to a gateway over HTTP share: official SDK clients that are always closed, raw SSE."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import GatewayServer
from tests.identity_support import create_key

MakeSdk = Callable[[GatewayServer], openai.OpenAI]


@pytest.fixture
def sdk() -> Iterator[MakeSdk]:
    """``sdk(gateway)``: the official OpenAI client on a new key, no retries; closed after the test (an SDK
    client holds its socket until closed; left to the GC it surfaces later as a ResourceWarning)."""
    opened: list[openai.OpenAI] = []

    def make(gateway: GatewayServer) -> openai.OpenAI:
        made = openai.OpenAI(
            base_url=f"{gateway.base_url}/v1", api_key=create_key(gateway.base_url), max_retries=0, timeout=30
        )
        opened.append(made)
        return made

    yield make
    for made in opened:
        made.close()


def sse_payloads(
    base_url: str, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None, timeout: float = 30
) -> tuple[httpx.Response, list[bytes]]:
    """A chat stream's raw SSE ``data:`` payloads, to check the framing an SDK would hide."""
    url = f"{base_url}/v1/chat/completions"
    with httpx.stream("POST", url, json=dict(body), headers=dict(headers or {}), timeout=timeout) as response:
        data = [line[6:].encode() for line in response.iter_lines() if line.startswith("data: ")]
    return response, data


def requests_by_route(base_url: str) -> dict[str, float]:
    """``llm_gateway_requests_total`` from ``/metrics``, summed by route."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "llm_gateway_requests_total":
                route = sample.labels.get("route", "")
                counts[route] = counts.get(route, 0) + sample.value
    return counts

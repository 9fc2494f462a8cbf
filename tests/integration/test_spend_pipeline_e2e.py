"""Every surface knows what its answers cost: the gateway on a real socket, priced deployments (a YAML price, so
the arithmetic is exact and known), the official SDKs as clients.

What must hold: ``x-gateway-cost-usd`` on non-streaming answers of chat, Messages, embeddings and Responses, the
exact cost of the answering deployment's price (the fallback's, not the first's), 0 for a cache hit; a stream's
cost in the reports; ``llm_gateway_cost_usd_total`` and the unpriced counter in ``/metrics``; a user's US-dollar
budget refusing with a message that names it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartGateway
from tests.fakes import Fail, FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import ADMIN_HEADERS, create_key
from tests.limits_support import admin_usage, wait_for
from tests.messages_support import MakeAnthropic, write_groups
from tests.sdk_support import MakeSdk

pytestmark = pytest.mark.integration

CHEAP = {"input_per_mtok": "1.5", "output_per_mtok": "6", "cached_input_per_mtok": "0.75"}
DEAR = {"input_per_mtok": "10", "output_per_mtok": "40"}
GROUPS = {
    "priced": [
        {"provider": "openai", "model": "gpt-4o-mini", "price": CHEAP},
        {"provider": "anthropic", "model": "claude-x", "price": DEAR},
    ],
    "free": [{"provider": "groq", "model": "llama-local"}],  # no price anywhere: unpriced
    "embed": [{"provider": "openai", "model": "text-embedding-3-small", "price": CHEAP}],
}


def cost(prompt: int, completion: int, price: dict[str, str], cached: int = 0) -> str:
    """The exact cost, by hand: tokens times dollars per million, to the micro-dollar."""
    cached_price = Decimal(price.get("cached_input_per_mtok", price["input_per_mtok"]))
    total = (
        (prompt - cached) * Decimal(price["input_per_mtok"])
        + cached * cached_price
        + completion * Decimal(price["output_per_mtok"])
    ) / 1_000_000
    return f"{total.quantize(Decimal('0.000001')):f}"


@pytest.fixture
def priced(
    start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider], tmp_path: Path
) -> GatewayServer:
    return start_gateway({**fake_env, "GATEWAY_CONFIG": write_groups(tmp_path, fakes, GROUPS)})


def test_every_surface_says_what_its_answer_cost(
    priced: GatewayServer, sdk: MakeSdk, claude: MakeAnthropic, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(priced)
    fakes["openai"].push(Reply(prompt_tokens=1_000, completion_tokens=250))
    chat = client.chat.completions.with_raw_response.create(
        model="priced", messages=[{"role": "user", "content": "Hi"}]
    )
    assert chat.headers["x-gateway-cost-usd"] == cost(1_000, 250, CHEAP)

    fakes["openai"].push(Reply(prompt_tokens=300, completion_tokens=20, cache_read_tokens=200))  # at the cached price
    response = client.responses.with_raw_response.create(model="priced", input="Hi", store=False)
    assert response.headers["x-gateway-cost-usd"] == cost(300, 20, CHEAP, cached=200)

    embedding = client.embeddings.with_raw_response.create(model="embed", input="one two three")
    usage = embedding.parse().usage
    assert embedding.headers["x-gateway-cost-usd"] == cost(usage.prompt_tokens, 0, CHEAP)

    fakes["openai"].push(Fail(503))  # the answer comes from the dear fallback: its price is charged
    fakes["anthropic"].push(Reply(prompt_tokens=50, completion_tokens=70))
    message = claude(priced, create_key(priced.base_url)).messages.with_raw_response.create(
        model="priced", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.headers["x-gateway-provider"] == "anthropic"
    assert message.headers["x-gateway-cost-usd"] == cost(50, 70, DEAR)


def test_a_cache_hit_costs_nothing_and_a_stream_is_charged_in_the_reports(
    priced: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    key = create_key(priced.base_url, "sam")
    headers = {"authorization": f"Bearer {key}"}
    body = {"model": "priced", "messages": [{"role": "user", "content": "Same again"}]}
    url = f"{priced.base_url}/v1/chat/completions"
    fakes["openai"].push(Reply(prompt_tokens=100, completion_tokens=10))
    first = httpx.post(url, json=body, headers=headers, timeout=10)
    again = httpx.post(url, json=body, headers=headers, timeout=10)
    assert (first.headers["x-gateway-cache"], again.headers["x-gateway-cache"]) == ("miss", "hit")
    assert again.headers["x-gateway-cost-usd"] == "0.000000"

    fakes["openai"].push(Reply(prompt_tokens=200, completion_tokens=30))
    with httpx.stream("POST", url, json={**body, "stream": True, "messages": [{"role": "user", "content": "Go"}]},
                      headers=headers, timeout=10) as stream:  # fmt: skip
        assert "x-gateway-cost-usd" not in stream.headers  # not known before the end
        list(stream.iter_lines())
    expected = Decimal(cost(100, 10, CHEAP)) + Decimal(cost(200, 30, CHEAP))

    def settled() -> dict[str, Any] | None:
        report = admin_usage(priced.base_url, "sam")
        return report if report["requests"] == 3 else None

    report = wait_for(settled, what="three requests in the ledger")
    assert Decimal(report["spend_usd"]) == expected
    assert Decimal(report["by_model"]["priced"]["spend_usd"]) == expected


def test_metrics_count_dollars_and_unpriced_answers(
    priced: GatewayServer, sdk: MakeSdk, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(priced)
    fakes["openai"].push(Reply(prompt_tokens=100_000, completion_tokens=0))
    client.chat.completions.create(model="priced", messages=[{"role": "user", "content": "Hi"}])
    free = client.chat.completions.with_raw_response.create(model="free", messages=[{"role": "user", "content": "Hi"}])
    assert free.headers["x-gateway-cost-usd"] == "0.000000"
    samples = {
        (sample.name, sample.labels.get("model"), sample.labels.get("provider")): sample.value
        for family in text_string_to_metric_families(httpx.get(f"{priced.base_url}/metrics").text)
        for sample in family.samples
    }
    assert samples[("llm_gateway_cost_usd_total", "priced", "openai")] == pytest.approx(0.15)
    assert samples[("llm_gateway_unpriced_requests_total", "free", "groq")] == 1
    assert ("llm_gateway_unpriced_requests_total", "priced", "openai") not in samples


def test_a_users_dollar_budget_refuses_and_says_which(
    priced: GatewayServer, sdk: MakeSdk, fakes: dict[str, FakeProvider]
) -> None:
    put = httpx.put(f"{priced.base_url}/admin/users/ula", headers=ADMIN_HEADERS, json={"monthly_budget_usd": "0.045"})
    assert put.status_code == 200, put.text
    key = create_key(priced.base_url, "ula")
    client = openai.OpenAI(base_url=f"{priced.base_url}/v1", api_key=key, max_retries=0)
    with client:
        # Admitted: 1,000 tokens out reserved at the chain's dearest price ($40 per million) is ~$0.040 of $0.045;
        # charged at the price of the deployment that answered: $0.0075.
        fakes["openai"].push(Reply(prompt_tokens=1_000, completion_tokens=1_000))
        first = client.chat.completions.with_raw_response.create(
            model="priced", messages=[{"role": "user", "content": "Hi"}], max_tokens=1_000
        )
        assert first.headers["x-gateway-cost-usd"] == cost(1_000, 1_000, CHEAP) == "0.007500"
        # The next one's ~$0.040 reservation cannot fit the $0.0375 left.
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(
                model="priced", messages=[{"role": "user", "content": "Hi"}], max_tokens=1_000
            )
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "insufficient_quota"
    assert "US-dollar budget of user 'ula'" in error["message"], error["message"]
    assert fakes["openai"].count == 1

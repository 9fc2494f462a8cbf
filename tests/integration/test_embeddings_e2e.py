"""Embeddings through the gateway, as a user makes them: the official ``openai`` SDK (sync and async) against the
gateway on a real socket, fake OpenAI/Anthropic/Groq upstreams behind it.

What must hold: the answer is OpenAI's (float and base64, order kept, ``dimensions``), fallback under chat's
rules, a deployment without an embeddings API skipped (400 ``model_not_supported`` when none is left), the
400s before any upstream call, budgets charged from the upstream's usage, the cache (a repeat charges nothing),
the ledger's ``endpoint``, telemetry's operation name, and ``models.retrieve``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import StartGateway
from tests.fakes import Fail, FakeProvider, embedding_tokens, fake_embedding
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import ledger_rows, set_user, sqlite_path, wait_for
from tests.sdk_support import MakeSdk

pytestmark = pytest.mark.integration

MODEL = "text-embedding-3-small"
TEXTS = ["the quick brown fox", "jumps over", "the lazy dog"]


def charged(texts: list[str]) -> int:
    return sum(embedding_tokens(text) for text in texts)


def test_float_embeddings_keep_their_order_and_values(gateway: GatewayServer, sdk: MakeSdk, fakes: Any) -> None:
    raw = sdk(gateway).embeddings.with_raw_response.create(model=MODEL, input=TEXTS, encoding_format="float")
    answer = raw.parse()
    assert [item.index for item in answer.data] == [0, 1, 2]
    assert [item.embedding for item in answer.data] == [fake_embedding(text) for text in TEXTS]
    assert answer.usage.prompt_tokens == charged(TEXTS)
    assert raw.headers["x-gateway-provider"] == "openai" and raw.headers["x-gateway-cache"] == "miss"
    sent = fakes["openai"].embeddings_requests[0].body
    assert sent == {"model": MODEL, "input": TEXTS, "encoding_format": "float"}  # passed through as sent


def test_the_sdks_default_base64_and_dimensions(gateway: GatewayServer, sdk: MakeSdk, fakes: Any) -> None:
    answer = sdk(gateway).embeddings.create(model=MODEL, input="hello", dimensions=256)
    assert fakes["openai"].embeddings_requests[0].body["encoding_format"] == "base64"  # the SDK's default
    assert answer.data[0].embedding == pytest.approx(fake_embedding("hello", 256))  # decoded by the SDK


def test_token_arrays_are_embedded_as_sent(gateway: GatewayServer, sdk: MakeSdk) -> None:
    answer = sdk(gateway).embeddings.create(model=MODEL, input=[[1, 2, 3], [4]], encoding_format="float")
    assert [item.embedding for item in answer.data] == [fake_embedding([1, 2, 3]), fake_embedding([4])]
    assert answer.usage.prompt_tokens == 4


async def test_the_async_client(gateway: GatewayServer) -> None:
    key = create_key(gateway.base_url)
    async with openai.AsyncOpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0) as client:
        answers = await asyncio.gather(
            *(client.embeddings.create(model=MODEL, input=text, encoding_format="float") for text in TEXTS)
        )
    assert [a.data[0].embedding for a in answers] == [fake_embedding(text) for text in TEXTS]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["x"] * 2049}, "input"),
        ({"dimensions": 0}, "dimensions"),
    ],
)
def test_bad_input_is_400_before_any_upstream_call(
    gateway: GatewayServer, fakes: Any, fields: dict[str, Any], param: str
) -> None:
    key = create_key(gateway.base_url)
    response = httpx.post(
        f"{gateway.base_url}/v1/embeddings", headers={"x-api-key": key}, json={"model": MODEL, "input": "x", **fields}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param and response.json()["error"]["type"] == "invalid_request_error"
    assert fakes["openai"].embeddings_requests == []


def write_config(tmp_path: Path, fakes: dict[str, FakeProvider], groups: str) -> str:
    config = tmp_path / "gateway.yaml"
    providers = "".join(
        f"  {name}:\n    type: {'anthropic' if name == 'anthropic' else 'openai'}\n"
        f"    api_key: {fake.api_key}\n    base_url: {fake.base_url}\n"
        for name, fake in fakes.items()
    )
    config.write_text(f"providers:\n{providers}models:\n{groups}")
    return str(config)


GROUPS = """\
  embed:
    - {provider: anthropic, model: claude-3-5-haiku-latest}
    - {provider: openai, model: text-embedding-3-small}
    - {provider: groq, model: nomic-embed-text}
  claude-only:
    - {provider: anthropic, model: claude-3-5-haiku-latest}
"""


@pytest.fixture
def grouped(start_gateway: StartGateway, fake_env: dict[str, str], fakes: Any, tmp_path: Path) -> GatewayServer:
    return start_gateway({**fake_env, "GATEWAY_CONFIG": write_config(tmp_path, fakes, GROUPS)})


def test_a_deployment_without_embeddings_is_skipped_and_a_failing_one_falls_back(
    grouped: GatewayServer, sdk: MakeSdk, fakes: Any
) -> None:
    fakes["openai"].push(Fail(503))
    raw = sdk(grouped).embeddings.with_raw_response.create(model="embed", input=TEXTS, encoding_format="float")
    assert raw.headers["x-gateway-provider"] == "groq"
    assert raw.headers["x-gateway-attempts"] == "2"  # openai's 503, then groq; anthropic skipped, never called
    assert fakes["anthropic"].embeddings_requests == []
    assert [item.embedding for item in raw.parse().data] == [fake_embedding(text) for text in TEXTS]


def test_a_group_with_no_embeddings_deployment_is_400_model_not_supported(
    grouped: GatewayServer, sdk: MakeSdk, fakes: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(grouped).embeddings.create(model="claude-only", input="x")
    assert refused.value.code == "model_not_supported" and refused.value.param == "model"
    assert fakes["anthropic"].requests == []


def test_budget_cache_ledger_and_usage(gateway: GatewayServer, fake_env: dict[str, str], fakes: Any) -> None:
    set_user(gateway.base_url, "ivy", monthly_token_budget=10_000)
    key = create_key(gateway.base_url, "ivy")
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0)
    with client:
        first = client.embeddings.with_raw_response.create(model=MODEL, input=TEXTS, encoding_format="float")
        again = client.embeddings.with_raw_response.create(model=MODEL, input=TEXTS, encoding_format="float")
        chat = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert (first.headers["x-gateway-cache"], again.headers["x-gateway-cache"]) == ("miss", "hit")
    assert again.parse().model_dump() == first.parse().model_dump()  # the packed entry gives the same floats
    assert len(fakes["openai"].embeddings_requests) == 1
    rows = wait_for(
        lambda: len(rows := ledger_rows(sqlite_path(fake_env["DATABASE_URL"]), user_id="ivy")) == 3 and rows,
        what="three ledger rows",
    )
    by_endpoint = sorted((row["endpoint"], row["cached"], row["prompt_tokens"]) for row in rows)
    assert by_endpoint == sorted(
        [("embeddings", 0, charged(TEXTS)), ("embeddings", 1, 0), ("chat", 0, chat.usage.prompt_tokens)]
    )
    usage = httpx.get(f"{gateway.base_url}/v1/usage", headers={"x-api-key": key}).json()
    assert usage["by_model"][MODEL]["prompt_tokens"] == charged(TEXTS)  # the hit charged nothing
    assert usage["reserved_tokens"] == 0


def test_models_retrieve_and_telemetry(gateway: GatewayServer, sdk: MakeSdk) -> None:
    client = sdk(gateway)
    assert client.models.retrieve(MODEL).id == MODEL
    client.embeddings.create(model=MODEL, input="x")
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert 'gen_ai_operation_name="embeddings"' in metrics or "llm_gateway_requests_total" in metrics
    assert 'route="/v1/embeddings"' in metrics

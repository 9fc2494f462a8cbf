"""One model group over the three clouds, Azure OpenAI -> AWS Bedrock -> Google Gemini, through the official
``openai`` SDK: each cloud answers in turn as the ones before it fail, streamed and not, always in OpenAI's format,
priced at its own vendor's price, recorded in the ledger and traced under the provider names the OpenTelemetry
GenAI conventions give the clouds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_gateway.app import build_telemetry
from llm_gateway.schemas.core import Usage
from llm_gateway.settings import load_settings
from tests.conftest import StartGateway
from tests.fakes import Fail, FakeProvider, Reply, StreamError
from tests.fakes.bedrock_wire import ACCESS_KEY_ID, REGION
from tests.harness import GatewayServer
from tests.identity_support import ADMIN_API_KEY, create_key, sqlite_url
from tests.limits_support import wait_for
from tests.pricing_support import genai_cost

pytestmark = pytest.mark.integration

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
# Each cloud's answer, and what the conventions call it (``gen_ai.provider.name``).
CLOUDS = {"azure": "azure.ai.openai", "bedrock": "aws.bedrock", "gemini": "gcp.gemini"}
MODELS = {"azure": "gpt-4o-mini", "bedrock": CLAUDE, "gemini": "gemini-2.5-flash"}
VENDORS = {"azure": "azure", "bedrock": "aws", "gemini": "google"}


@pytest.fixture
def clouds() -> Iterator[dict[str, FakeProvider]]:
    with FakeProvider("azure") as azure, FakeProvider("bedrock") as bedrock, FakeProvider("gemini") as gemini:
        yield {"azure": azure, "bedrock": bedrock, "gemini": gemini}


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def gateway(
    start_gateway: StartGateway, clouds: dict[str, FakeProvider], spans: InMemorySpanExporter, tmp_path: Path
) -> GatewayServer:
    """Each cloud with its own credentials, as its team would configure it: an Azure key and API version, AWS
    access keys (SigV4, checked by the fake with botocore), a Gemini API key."""
    azure, bedrock, gemini = clouds["azure"], clouds["bedrock"], clouds["gemini"]
    providers = {
        "azure": {"type": "azure", "base_url": azure.base_url, "api_key": azure.api_key, "api_version": "2024-10-21"},
        "bedrock": {"type": "bedrock", "base_url": bedrock.base_url, "region": REGION,
                    "aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": bedrock.api_key},
        "gemini": {"type": "gemini", "base_url": gemini.base_url, "api_key": gemini.api_key},
    }  # fmt: skip
    chain = [{"provider": name, "model": model} for name, model in MODELS.items()]
    path = tmp_path / "gateway.yaml"
    path.write_bytes(orjson.dumps({"providers": providers, "models": {"enterprise": chain}}))
    env = {
        "GATEWAY_CONFIG": str(path),
        "DATABASE_URL": sqlite_url(tmp_path),
        "ADMIN_API_KEY": ADMIN_API_KEY,
        "LOG_LEVEL": "WARNING",
    }
    telemetry = build_telemetry(load_settings(env), span_processor=SimpleSpanProcessor(spans))
    return start_gateway(env, telemetry=telemetry)


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[openai.OpenAI]:
    key = create_key(gateway.base_url, "platform-team")
    with openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0, timeout=30) as made:
        yield made


def fail_before(clouds: dict[str, FakeProvider], answering: str) -> None:
    """Each cloud ahead of ``answering`` refuses the way it refuses when it is busy: Azure's 429 with
    ``retry-after-ms``, Bedrock's ThrottlingException."""
    failures = {
        "azure": Fail(429, headers={"retry-after-ms": "1500"}),
        "bedrock": Fail(429, error_type="ThrottlingException"),
    }
    for name in list(MODELS)[: list(MODELS).index(answering)]:
        clouds[name].push(failures[name])


def ledger(tmp_path: Path) -> list[tuple[str, str, int, Decimal]]:
    """The ledger's rows once written (the ledger writes in batches); SQLite keeps US dollars as micro-dollars."""

    def rows() -> list[tuple[str, str, int, int]] | None:
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            found = db.execute("SELECT provider, upstream_model, attempts, cost_usd FROM usage_ledger").fetchall()
        db.close()
        return found or None

    written = wait_for(rows, what="the ledger row")
    return [(provider, model, attempts, Decimal(cost) / 1_000_000) for provider, model, attempts, cost in written]


def provider_names(spans: InMemorySpanExporter) -> list[Any]:
    """``gen_ai.provider.name`` of each upstream attempt span, in order."""
    attempts = [span for span in spans.get_finished_spans() if (span.attributes or {}).get("gateway.attempt")]
    attempts.sort(key=lambda span: span.start_time or 0)
    return [(span.attributes or {})["gen_ai.provider.name"] for span in attempts]


@pytest.mark.parametrize("answering", list(MODELS))
def test_each_cloud_answers_in_openai_format_once_the_ones_before_it_fail(
    client: openai.OpenAI,
    clouds: dict[str, FakeProvider],
    spans: InMemorySpanExporter,
    tmp_path: Path,
    gateway: GatewayServer,
    answering: str,
) -> None:
    fail_before(clouds, answering)
    raw = client.chat.completions.with_raw_response.create(model="enterprise", messages=HELLO, max_tokens=64)
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == f"Hello from {answering}"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    position = list(MODELS).index(answering) + 1
    assert raw.headers["x-gateway-provider"] == answering
    assert raw.headers["x-gateway-attempts"] == str(position)
    assert [len(clouds[name].chat_requests) for name in MODELS] == [1] * position + [0] * (3 - position)

    # Priced at the answering cloud's own price for that model (genai-prices), charged and recorded once.
    usage = Usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    expected = genai_cost(usage, MODELS[answering], provider_id=VENDORS[answering])
    assert expected > 0
    assert Decimal(raw.headers["x-gateway-cost-usd"]) == expected
    assert ledger(tmp_path) == [(answering, MODELS[answering], position, expected)]
    assert provider_names(spans) == [CLOUDS[name] for name in list(MODELS)[:position]]


@pytest.mark.parametrize("answering", list(MODELS))
def test_a_stream_falls_back_across_the_clouds_until_one_streams(
    client: openai.OpenAI, clouds: dict[str, FakeProvider], tmp_path: Path, gateway: GatewayServer, answering: str
) -> None:
    # Before any content the stream may still fall back: Azure fails inside its stream, Bedrock refuses outright.
    if answering != "azure":
        clouds["azure"].push(StreamError(0, message="The server had an error processing your request."))
    if answering == "gemini":
        clouds["bedrock"].push(Fail(503, error_type="ServiceUnavailableException"))
    clouds[answering].push(Reply("one two three four", chunks=4))

    chunks = list(
        client.chat.completions.create(
            model="enterprise", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert {chunk.id for chunk in chunks} == {chunks[0].id}  # one completion, whichever cloud wrote it
    [(provider, model, attempts, cost)] = ledger(tmp_path)
    assert (provider, model, attempts) == (answering, MODELS[answering], list(MODELS).index(answering) + 1)
    assert cost > 0


def test_when_every_cloud_fails_the_caller_gets_one_error_naming_each_attempt(
    client: openai.OpenAI, clouds: dict[str, FakeProvider]
) -> None:
    clouds["azure"].push(Fail(500))
    clouds["bedrock"].push(Fail(429, error_type="ThrottlingException"))
    clouds["gemini"].push(Fail(503))
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="enterprise", messages=HELLO)
    assert failed.value.status_code == 502
    error = failed.value.body
    assert isinstance(error, dict) and error["code"] == "all_providers_failed"
    for name in MODELS:
        assert name in error["message"]

"""Azure OpenAI's adapter without a network: its URLs and heads, its credentials, its error envelope."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from llm_gateway.providers.adapter import ErrorFields
from llm_gateway.providers.azure import (
    MAX_DEPLOYMENT_HEADS,
    AzureProvider,
    credentials,
    deployment_path,
    filter_summary,
    read_error,
    resource_url,
)
from llm_gateway.providers.registry import provider_class
from llm_gateway.settings import ProviderConfig

BASE = "https://contoso.openai.azure.com"


def config(**fields: Any) -> ProviderConfig:
    fields.setdefault("base_url", BASE)
    if "azure_ad_token" not in fields:
        fields.setdefault("api_key", "k-123")
    secrets = {name: SecretStr(value) for name, value in fields.items() if name in ("api_key", "azure_ad_token")}
    return ProviderConfig(type="azure", **{**fields, **secrets})


def head_lines(head: bytes) -> list[str]:
    return head.decode("latin-1").split("\r\n")


def test_the_registry_maps_type_azure_to_the_adapter() -> None:
    assert provider_class("azure") is AzureProvider


@pytest.mark.parametrize(
    ("given_url", "origin"),
    [
        (BASE, BASE),
        (f"{BASE}/openai", BASE),
        (f"{BASE}/openai/v1", BASE),
        ("http://127.0.0.1:8080/proxy", "http://127.0.0.1:8080/proxy"),
    ],
)
def test_a_base_url_given_with_openai_or_v1_is_the_resource_all_the_same(given_url: str, origin: str) -> None:
    assert resource_url(given_url) == origin


def test_deployment_paths_percent_encode_the_name_and_version() -> None:
    assert deployment_path("gpt-4o", "chat/completions", "2024-10-21") == (
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    )
    assert deployment_path("../../x?y=1\r\nHost: evil", "embeddings", "v 1") == (
        "/openai/deployments/..%2F..%2Fx%3Fy%3D1%0D%0AHost%3A%20evil/embeddings?api-version=v%201"
    )


@given(st.text(min_size=1, max_size=40))
def test_no_deployment_name_leaves_its_path_segment(name: str) -> None:
    path = deployment_path(name, "chat/completions", "2024-10-21")
    segment = path.removeprefix("/openai/deployments/").removesuffix("/chat/completions?api-version=2024-10-21")
    assert "/" not in segment and "?" not in segment and segment.isascii() and segment.isprintable()


def test_a_key_is_sent_as_api_key_and_a_token_as_bearer_never_both() -> None:
    assert credentials(config(api_key="k-1")) == ({"api-key": "k-1"}, "k-1")
    assert credentials(config(azure_ad_token="eyJ.t")) == ({"Authorization": "Bearer eyJ.t"}, "eyJ.t")
    with pytest.raises(ValidationError, match="set api_key or azure_ad_token, not both"):
        config(api_key="k-1", azure_ad_token="eyJ.t")


async def test_deployment_heads_name_the_deployment_and_version_and_are_built_once() -> None:
    provider = AzureProvider("azure", config(api_version="2024-10-21", headers={"x-ms-client": "gw"}))
    try:
        head = provider.chat_head("gpt-4o", stream=False)
        assert head is not None
        lines = head_lines(head)
        assert lines[0] == "POST /openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 HTTP/1.1"
        assert "api-key: k-123" in lines and "x-ms-client: gw" in lines
        assert not any(line.lower().startswith("authorization") for line in lines)
        stream_head = provider.chat_head("gpt-4o", stream=True)
        assert stream_head is not None and "Accept: text/event-stream" in head_lines(stream_head)
        assert head_lines(provider.embeddings_head("emb"))[0] == (
            "POST /openai/deployments/emb/embeddings?api-version=2024-10-21 HTTP/1.1"
        )
        assert provider.chat_head("gpt-4o", stream=False) is head  # kept, not rebuilt
    finally:
        await provider.aclose()


async def test_deployment_heads_are_bounded() -> None:
    provider = AzureProvider("azure", config(api_version="2024-10-21"))
    try:
        for index in range(MAX_DEPLOYMENT_HEADS + 10):
            provider.chat_head(f"d{index}", stream=False)
        assert len(provider._heads) == MAX_DEPLOYMENT_HEADS
        assert "d0" not in provider._heads and f"d{MAX_DEPLOYMENT_HEADS + 9}" in provider._heads
    finally:
        await provider.aclose()


async def test_without_api_version_every_call_goes_to_the_v1_path_with_a_bearer_token() -> None:
    provider = AzureProvider("azure", config(base_url=f"{BASE}/openai/v1", azure_ad_token="eyJ.tok"))
    try:
        assert provider.chat_head("gpt-4o", stream=False) is None  # the adapter's own head: one path for all
        chat = head_lines(provider._head)
        assert chat[0] == "POST /openai/v1/chat/completions HTTP/1.1"
        assert "Authorization: Bearer eyJ.tok" in chat and not any(x.startswith("api-key") for x in chat)
        assert head_lines(provider.embeddings_head("emb"))[0] == "POST /openai/v1/embeddings HTTP/1.1"
        assert provider.mask("token eyJ.tok leaked") == "token *** leaked"
    finally:
        await provider.aclose()


CONTENT_FILTER = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": False, "severity": "safe"},
                "jailbreak": {"filtered": True, "detected": True},
                "violence": {"filtered": True, "severity": "medium"},
            },
        },
    }
}


def test_a_prompt_filter_refusal_keeps_its_message_and_names_what_tripped() -> None:
    fields = read_error(CONTENT_FILTER)
    assert fields == ErrorFields(
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy."
        " (filtered: jailbreak, violence medium)",
        None,
        "content_filter",
        "prompt",
        None,  # the status (400) decides: not retried
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"code": "429", "message": "Rate limit"}}, ErrorFields("Rate limit", None, "429")),
        (
            {"error": {"code": "DeploymentNotFound", "message": "No such deployment."}},
            ErrorFields("No such deployment.", None, "DeploymentNotFound", None, True),
        ),
        (
            {"error": {"code": "404", "message": "Resource not found"}},
            ErrorFields("Resource not found", None, "404", None, True),
        ),
        ({"statusCode": 401, "message": "Unauthorized."}, ErrorFields("Unauthorized.")),
        (
            {"error": {"message": "Too long", "type": "invalid_request_error", "param": "messages", "code": "long"}},
            ErrorFields("Too long", "invalid_request_error", "long", "messages"),
        ),
        ({"error": "text"}, ErrorFields(None)),
        (None, ErrorFields(None)),
        ([1], ErrorFields(None)),
    ],
)
def test_azures_error_bodies(body: Any, expected: ErrorFields) -> None:
    assert read_error(body) == expected


def test_a_filter_summary_reads_only_well_formed_results() -> None:
    assert filter_summary(None) == ""
    assert filter_summary({"content_filter_result": "x"}) == ""
    assert filter_summary({"content_filter_result": {"sexual": {"filtered": False}, "hate": "x"}}) == ""
    assert filter_summary({"content_filter_result": {"profanity": {"filtered": True}}}) == "profanity"

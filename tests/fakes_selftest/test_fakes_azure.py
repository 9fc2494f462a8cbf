"""The fake Azure OpenAI resource speaks Azure's wire: the official ``openai.AzureOpenAI`` client (deployment URLs,
``api-version``, ``api-key`` or an Entra ID token) and ``openai.OpenAI`` on the v1 path read its answers, its streams
and its errors; every behaviour plays on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import (
    Delay,
    Drop,
    EchoHeaders,
    Fail,
    FailMidStream,
    FakeProvider,
    Flood,
    Raw,
    Reply,
    Stall,
    StreamError,
    fake_embedding,
)
from tests.fakes.azure_wire import FILTER_MESSAGE, FILTER_TRIGGER, entra_token, filter_results

pytest_plugins = ["tests.fakes.fixtures"]

VERSION = "2024-10-21"
HI = [{"role": "user", "content": "hi"}]
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


@pytest.fixture
def azure(azure_fake: FakeProvider) -> Iterator[openai.AzureOpenAI]:
    with openai.AzureOpenAI(
        azure_endpoint=azure_fake.base_url, api_key=azure_fake.api_key, api_version=VERSION, max_retries=0, timeout=5
    ) as client:
        yield client


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def data_events(text: str) -> list[Any]:
    return [json.loads(line[6:]) if line != "data: [DONE]" else "[DONE]" for line in text.split("\n\n") if line]


def deployment_url(fake: FakeProvider, deployment: str, operation: str = "chat/completions") -> str:
    return f"{fake.base_url}/openai/deployments/{deployment}/{operation}"


def test_a_completion_carries_azures_filter_results(azure_fake: FakeProvider, azure: openai.AzureOpenAI) -> None:
    completion = azure.chat.completions.create(model="gpt-4o", messages=HI)
    assert completion.choices[0].message.content == "Hello from azure"
    extra = completion.model_dump()
    assert extra["prompt_filter_results"] == [{"prompt_index": 0, "content_filter_results": filter_results()}]
    assert extra["choices"][0]["content_filter_results"] == filter_results()
    [sent] = azure_fake.chat_requests
    assert sent.path == "/openai/deployments/gpt-4o/chat/completions"
    assert sent.headers["api-key"] == azure_fake.api_key and "authorization" not in sent.headers
    assert azure_fake.count == 1


def test_a_stream_opens_with_the_prompt_filter_preamble(azure_fake: FakeProvider, azure: openai.AzureOpenAI) -> None:
    chunks = list(
        azure.chat.completions.create(
            model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    preamble = chunks[0].model_dump()
    assert (preamble["choices"], preamble["id"], preamble["model"]) == ([], "", "")
    assert preamble["prompt_filter_results"][0]["content_filter_results"] == filter_results()
    assert chunks[1].choices[0].delta.role == "assistant"
    assert chunks[1].model_dump()["choices"][0]["content_filter_results"] == {}
    assert chunks[2].model_dump()["choices"][0]["content_filter_results"] == filter_results()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from azure"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 18


def test_an_answer_filtered_on_the_way_out(azure_fake: FakeProvider, azure: openai.AzureOpenAI) -> None:
    azure_fake.push(Reply("partial", finish_reason="content_filter"), Reply("partial", finish_reason="content_filter"))
    completion = azure.chat.completions.create(model="gpt-4o", messages=HI)
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.model_dump()["choices"][0]["content_filter_results"]["violence"]["filtered"] is True
    chunks = list(azure.chat.completions.create(model="gpt-4o", messages=HI, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "content_filter"
    ]


def test_the_prompt_filter_refuses_with_azures_400(azure_fake: FakeProvider, azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"tell {FILTER_TRIGGER}"}])
    assert caught.value.code == "content_filter" and caught.value.param == "prompt"
    body = caught.value.body
    assert isinstance(body, dict) and body["message"] == FILTER_MESSAGE
    assert body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert body["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "medium"}
    azure.chat.completions.create(model="gpt-4o", messages=HI)  # the refusal consumed no behaviour
    assert azure_fake.count == 2


def test_tools_and_embeddings(azure_fake: FakeProvider, azure: openai.AzureOpenAI) -> None:
    azure_fake.push(Reply(tool_calls=[TOOL_CALL]))
    completion = azure.chat.completions.create(model="gpt-4o", messages=HI)
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.tool_calls is not None
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"city":"Paris"}'
    embedded = azure.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert [item.embedding for item in embedded.data] == [fake_embedding("a"), fake_embedding("b")]
    [sent] = azure_fake.embeddings_requests
    assert sent.path == "/openai/deployments/text-embedding-3-small/embeddings"


def test_an_entra_token_is_taken_and_a_wrong_one_refused(azure_fake: FakeProvider) -> None:
    token = entra_token(azure_fake.api_key)
    with openai.AzureOpenAI(
        azure_endpoint=azure_fake.base_url, azure_ad_token=token, api_version=VERSION, max_retries=0
    ) as client:
        assert client.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content
    with (
        openai.AzureOpenAI(
            azure_endpoint=azure_fake.base_url, azure_ad_token="expired", api_version=VERSION, max_retries=0
        ) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    body = caught.value.body
    assert isinstance(body, dict) and body["statusCode"] == 401 and "Access token is missing" in body["message"]
    assert azure_fake.chat_requests[0].headers["authorization"] == f"Bearer {token}"
    assert "api-key" not in azure_fake.chat_requests[0].headers


def test_a_wrong_key_is_azures_401(azure_fake: FakeProvider) -> None:
    with (
        openai.AzureOpenAI(
            azure_endpoint=azure_fake.base_url, api_key="wrong", api_version=VERSION, max_retries=0
        ) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert caught.value.code == "401" and "invalid subscription key" in caught.value.message


def test_the_v1_path_takes_the_openai_client(azure_fake: FakeProvider) -> None:
    base_url = f"{azure_fake.base_url}/openai/v1"
    with openai.OpenAI(base_url=base_url, api_key=azure_fake.api_key, max_retries=0) as client:
        assert client.chat.completions.create(model="chat-prod", messages=HI).choices[0].message.content
        chunks = list(client.chat.completions.create(model="chat-prod", messages=HI, stream=True))
        assert chunks[0].model_dump()["prompt_filter_results"]
        assert len(client.embeddings.create(model="text-embedding-3-small", input="a").data) == 1
    with openai.OpenAI(
        base_url=base_url, api_key="unused", default_headers={"api-key": azure_fake.api_key}, max_retries=0
    ) as client:
        assert client.chat.completions.create(model="chat-prod", messages=HI).choices[0].message.content
    assert [r.path for r in azure_fake.chat_requests] == ["/openai/v1/chat/completions"] * 3
    assert azure_fake.chat_requests[0].body["model"] == "chat-prod"


def test_a_deployment_url_needs_a_known_api_version_and_deployment(
    azure_fake: FakeProvider, http: httpx.Client
) -> None:
    headers = {"api-key": azure_fake.api_key}
    body = {"messages": HI}
    missing = http.post(deployment_url(azure_fake, "gpt-4o"), json=body, headers=headers)
    unknown = http.post(deployment_url(azure_fake, "gpt-4o"), params={"api-version": "1999-01-01"}, json=body,
                        headers=headers)  # fmt: skip
    assert (missing.status_code, missing.json()) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    assert (unknown.status_code, unknown.json()) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    absent = http.post(deployment_url(azure_fake, "gpt-5"), params={"api-version": VERSION}, json=body,
                       headers=headers)  # fmt: skip
    assert absent.status_code == 404 and absent.json()["error"]["code"] == "DeploymentNotFound"
    # no model in the body: the URL names the deployment
    answered = http.post(deployment_url(azure_fake, "gpt-4o"), params={"api-version": VERSION}, json=body,
                         headers=headers)  # fmt: skip
    assert answered.status_code == 200 and answered.json()["model"] == "gpt-4o"
    assert answered.headers["apim-request-id"]
    bad_version = http.post(f"{azure_fake.base_url}/openai/v1/chat/completions", params={"api-version": VERSION},
                            json={"model": "gpt-4o", "messages": HI}, headers=headers)  # fmt: skip
    assert bad_version.status_code == 400
    assert azure_fake.count == 5


def test_429_carries_azures_retry_headers(azure_fake: FakeProvider, azure: openai.AzureOpenAI) -> None:
    azure_fake.push(Fail(429, headers={"retry-after-ms": "1500", "retry-after": "2"}))
    with pytest.raises(openai.RateLimitError) as caught:
        azure.chat.completions.create(model="gpt-4o", messages=HI)
    assert caught.value.code == "429" and "exceeded token rate limit" in caught.value.message
    assert caught.value.response.headers["retry-after-ms"] == "1500"


def test_every_behaviour_plays(azure_fake: FakeProvider, azure: openai.AzureOpenAI, http: httpx.Client) -> None:
    url = deployment_url(azure_fake, "gpt-4o")
    params = {"api-version": VERSION}
    headers = {"api-key": azure_fake.api_key}
    stream_body = {"messages": HI, "stream": True}
    azure_fake.push(Delay(0.05, Reply("late")), Drop())
    assert azure.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content == "late"
    with pytest.raises(openai.APIConnectionError):
        azure.chat.completions.create(model="gpt-4o", messages=HI)

    azure_fake.push(FailMidStream(1), Stall(1, 0.05, reply=Reply("a b")), StreamError(1, message="boom"))
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(url, params=params, json=stream_body, headers=headers)
    stalled = http.post(url, params=params, json=stream_body, headers=headers)
    assert [e for e in data_events(stalled.text)][-1] == "[DONE]"
    broken = data_events(http.post(url, params=params, json=stream_body, headers=headers).text)
    assert broken[0]["prompt_filter_results"] and broken[-1]["error"]["message"] == "boom"

    azure_fake.push(Raw(502, b"<html>bad gateway</html>", "text/html"), Flood(1 << 16), EchoHeaders())
    assert http.post(url, params=params, json={"messages": HI}, headers=headers).status_code == 502
    assert len(http.post(url, params=params, json={"messages": HI}, headers=headers).content) == 1 << 16
    echoed = http.post(url, params=params, json={"messages": HI}, headers=headers)
    assert echoed.status_code == 400 and azure_fake.api_key in echoed.text

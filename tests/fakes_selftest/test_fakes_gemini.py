"""The Gemini and Vertex AI fakes speak Google's wire: google-auth itself gets its tokens from the Vertex fake's
OAuth endpoint, bodies are judged as the real API judges them, and every behaviour plays."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import google.auth.transport.urllib3
import httpx
import pytest
import urllib3
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account

from tests.fakes import Drop, EchoHeaders, Fail, FailMidStream, FakeProvider, Flood, Raw, Reply, Stall, StreamError
from tests.fakes.gemini_wire import PROMPT_BLOCKED
from tests.fakes.google_token import TokenServer, write_service_account

HELLO = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
CLOUD = ["https://www.googleapis.com/auth/cloud-platform"]
VERTEX_MODELS = "/v1/projects/test-project/locations/us-central1/publishers/google/models"


def generate(fake: FakeProvider, body: Any, *, stream: bool = False, key: str | None = None) -> httpx.Response:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    headers = {"x-goog-api-key": fake.api_key if key is None else key}
    return httpx.post(
        f"{fake.base_url}/v1beta/models/gemini-2.5-flash:{method}", json=body, headers=headers, timeout=10
    )


def events(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def tokens_of(fake: FakeProvider) -> TokenServer:
    server = getattr(fake.wire, "tokens", None)
    assert isinstance(server, TokenServer)
    return server


def google_token(key_file: Path) -> str:
    """A token as google-auth obtains it: the service-account file's JWT assertion traded at its token_uri."""
    credentials = service_account.Credentials.from_service_account_file(str(key_file), scopes=CLOUD)
    credentials.refresh(google.auth.transport.urllib3.Request(urllib3.PoolManager()))
    assert isinstance(credentials.token, str)
    return credentials.token


# ------------------------------------------------------------------------------------------ Gemini


def test_answers_and_usage(gemini_fake: FakeProvider) -> None:
    answer = generate(gemini_fake, HELLO).json()
    assert answer["candidates"] == [
        {"content": {"parts": [{"text": "Hello from gemini"}], "role": "model"}, "finishReason": "STOP", "index": 0}
    ]
    assert answer["usageMetadata"] == {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18}


def test_keys(gemini_fake: FakeProvider) -> None:
    wrong = generate(gemini_fake, HELLO, key="AIzaWrong")
    assert wrong.status_code == 400
    error = wrong.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["details"][0]["reason"] == "API_KEY_INVALID"
    missing = generate(gemini_fake, HELLO, key="")
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert gemini_fake.count == 2


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "contents is not specified"),
        ({**HELLO, "temperature": 1}, 'Unknown name "temperature"'),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [{"role": "user", "parts": [{"text": "a", "inlineData": {}}]}]}, "oneof"),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "x"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                    {"role": "user", "parts": [{"functionResponse": {"response": {}}}]},
                ]
            },
            "Name cannot be empty",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "x"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f"}}, {"functionCall": {"name": "g"}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
                ]
            },
            "number of function response parts",
        ),
        ({**HELLO, "generationConfig": {"candidateCount": 9}}, "candidate_count"),
        ({**HELLO, "generationConfig": {"responseJsonSchema": {}}}, "response_mime_type"),
        ({**HELLO, "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}}, "mode"),
    ],
)
def test_bodies_are_judged(gemini_fake: FakeProvider, body: dict[str, Any], says: str) -> None:
    response = generate(gemini_fake, body)
    assert response.status_code == 400 and says in response.json()["error"]["message"]


def test_streams_with_alt_sse(gemini_fake: FakeProvider) -> None:
    gemini_fake.push(Reply("a b", completion_tokens=2))
    response = generate(gemini_fake, HELLO, stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    got = events(response)
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in got] == ["a", " b", ""]
    assert got[-1]["candidates"][0]["finishReason"] == "STOP"
    assert got[-1]["usageMetadata"]["candidatesTokenCount"] == 2


def test_safety_and_prompt_blocks(gemini_fake: FakeProvider) -> None:
    gemini_fake.push(Reply(finish_reason="content_filter"), PROMPT_BLOCKED)
    safety = generate(gemini_fake, HELLO).json()["candidates"][0]
    assert safety["finishReason"] == "SAFETY" and "content" not in safety
    blocked = generate(gemini_fake, HELLO).json()
    assert "candidates" not in blocked and blocked["promptFeedback"]["blockReason"] == "SAFETY"


def test_tool_calls_carry_a_thought_signature(gemini_fake: FakeProvider) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    gemini_fake.push(Reply(tool_calls=[call], thinking="why"))
    parts = generate(gemini_fake, HELLO).json()["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "why", "thought": True}
    assert parts[1]["functionCall"] == {"name": "f", "args": {"a": 1}} and parts[1]["thoughtSignature"]


def test_failures_use_google_status_names(gemini_fake: FakeProvider) -> None:
    gemini_fake.push(Fail(429), Fail(503), Fail(400, "no", error_type="FAILED_PRECONDITION", code="X"), Fail(500))
    assert generate(gemini_fake, HELLO).json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert generate(gemini_fake, HELLO).json()["error"]["status"] == "UNAVAILABLE"
    error = generate(gemini_fake, HELLO).json()["error"]
    assert (error["status"], error["message"], error["details"][0]["reason"]) == ("FAILED_PRECONDITION", "no", "X")
    assert generate(gemini_fake, HELLO).json()["error"] == {
        "code": 500,
        "message": error_500_message(),
        "status": "INTERNAL",
    }


def error_500_message() -> str:
    return (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    )


def test_stream_behaviours(gemini_fake: FakeProvider) -> None:
    gemini_fake.push(StreamError(1, message="boom"))
    got = events(generate(gemini_fake, HELLO, stream=True))
    assert got[-1] == {"error": {"code": 503, "message": "boom", "status": "UNAVAILABLE"}} and len(got) == 2
    gemini_fake.push(FailMidStream(1))
    with pytest.raises(httpx.RemoteProtocolError):
        generate(gemini_fake, HELLO, stream=True)
    gemini_fake.push(Stall(1, 0.2))
    started = time.monotonic()
    assert len(events(generate(gemini_fake, HELLO, stream=True))) == 4 and time.monotonic() - started >= 0.2
    gemini_fake.push(Drop())
    with pytest.raises(httpx.TransportError):
        generate(gemini_fake, HELLO)
    gemini_fake.push(Raw(502, b"<html>bad gateway</html>", "text/html"))
    assert generate(gemini_fake, HELLO).status_code == 502
    gemini_fake.push(Flood(1 << 20))
    assert len(generate(gemini_fake, HELLO).content) == 1 << 20
    gemini_fake.push(EchoHeaders(400))
    assert gemini_fake.api_key in generate(gemini_fake, HELLO).json()["error"]["message"]


def test_batch_embed_contents(gemini_fake: FakeProvider) -> None:
    url = f"{gemini_fake.base_url}/v1beta/models/gemini-embedding-001:batchEmbedContents"
    headers = {"x-goog-api-key": gemini_fake.api_key}
    request = {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4}
    answer = httpx.post(url, json={"requests": [request, request]}, headers=headers).json()
    assert [len(item["values"]) for item in answer["embeddings"]] == [4, 4]
    wrong_model = {**request, "model": "models/other"}
    assert httpx.post(url, json={"requests": [wrong_model]}, headers=headers).status_code == 400
    assert httpx.post(url, json={"requests": [request] * 101}, headers=headers).status_code == 400
    assert len(gemini_fake.embeddings_requests) == 3 and gemini_fake.count == 0


# ------------------------------------------------------------------------------------------ Vertex


def test_google_auth_gets_a_token_vertex_accepts(vertex_fake: FakeProvider, vertex_credentials: Path) -> None:
    token = google_token(vertex_credentials)
    assert token.startswith("ya29.") and tokens_of(vertex_fake).issued == [token]
    url = f"{vertex_fake.base_url}{VERTEX_MODELS}/gemini-2.5-flash:generateContent"
    answer = httpx.post(url, json=HELLO, headers={"authorization": f"Bearer {token}"})
    assert answer.json()["candidates"][0]["content"]["parts"] == [{"text": "Hello from vertex"}]
    refused = httpx.post(url, json=HELLO, headers={"authorization": "Bearer ya29.made-up"})
    assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"
    predict = f"{vertex_fake.base_url}{VERTEX_MODELS}/gemini-embedding-001:predict"
    two = {"instances": [{"content": "a"}, {"content": "b"}]}
    assert httpx.post(predict, json=two, headers={"authorization": f"Bearer {token}"}).status_code == 400
    one = httpx.post(predict, json={"instances": [{"content": "abcd"}]}, headers={"authorization": f"Bearer {token}"})
    assert one.json()["predictions"][0]["embeddings"]["statistics"]["token_count"] == 2


def test_tokens_expire(vertex_fake: FakeProvider, vertex_credentials: Path) -> None:
    tokens_of(vertex_fake).lifetime = 1
    token = google_token(vertex_credentials)
    assert tokens_of(vertex_fake).valid(token)
    time.sleep(1.1)
    assert not tokens_of(vertex_fake).valid(token)


def test_an_untrusted_key_and_scripted_failures_are_refused(
    vertex_fake: FakeProvider, vertex_credentials: Path, tmp_path: Path
) -> None:
    stranger = write_service_account(tmp_path / "other.json", f"{vertex_fake.base_url}/token", TokenServer())
    with pytest.raises(RefreshError, match="Invalid JWT Signature"):
        google_token(stranger)
    tokens_of(vertex_fake).fail_next(400)
    with pytest.raises(RefreshError, match="scripted failure"):
        google_token(vertex_credentials)
    assert tokens_of(vertex_fake).issued == []

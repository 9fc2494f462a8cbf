"""Who is calling, end to end: every way in through the ``openai`` SDK and raw HTTP, and every attack refused.

Runs once on SQLite and once on PostgreSQL. The gateway verifies RS256 JWTs with a configured
public key, issuer and audience, so the algorithm-confusion attack has a public key to abuse.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from llm_gateway.auth.api_keys import generate_key
from tests.fakes import CHAT_GROUPS, EMBEDDING_GROUPS, FakeProvider
from tests.harness import GatewayServer
from tests.identity_support import (
    ADMIN_HEADERS,
    b64,
    create_key,
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    forge_hs256,
    gateway_env,
    public_pem,
)

pytestmark = pytest.mark.integration

ISSUER, AUDIENCE = "https://issuer.example", "llm-gateway"
MESSAGES = [{"role": "user", "content": "Say hello."}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider("openai") as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(upstream: FakeProvider, database_url: str, signing_key: rsa.RSAPrivateKey) -> Iterator[GatewayServer]:  # noqa: F811
    env = gateway_env(
        upstream.env,
        database_url,
        JWT_ALGORITHM="RS256",
        JWT_PUBLIC_KEY=public_pem(signing_key),
        JWT_ISSUER=ISSUER,
        JWT_AUDIENCE=AUDIENCE,
    )
    with GatewayServer(env) as server:
        yield server


@pytest.fixture
def make_jwt(signing_key: rsa.RSAPrivateKey) -> Callable[..., str]:
    def make(**overrides: Any) -> str:
        now = int(time.time())
        claims = {"sub": "jwt-user", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **overrides}
        return jwt.encode({k: v for k, v in claims.items() if v is not None}, signing_key, algorithm="RS256")

    return make


_opened: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """An SDK client holds its socket until closed; left to the GC it surfaces later as a ResourceWarning."""
    yield
    while _opened:
        _opened.pop().close()


def sdk(gateway: GatewayServer, api_key: str, **options: Any) -> openai.OpenAI:
    made = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=api_key, max_retries=0, timeout=20, **options)
    _opened.append(made)
    return made


def chat(gateway: GatewayServer, headers: dict[str, str], body: dict[str, Any] = CHAT) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", headers=headers, json=body, timeout=20)


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "invalid_api_key")


# -- every way in ----------------------------------------------------------------------------------


def test_sdk_with_an_api_key(gateway: GatewayServer, upstream: FakeProvider) -> None:
    client = sdk(gateway, create_key(gateway.base_url, "alice"))
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "Hello from openai"
    assert [m.id for m in client.models.list().data] == [*CHAT_GROUPS, *EMBEDDING_GROUPS]
    # The gateway's credential goes upstream, never the caller's.
    assert upstream.chat_requests[-1].headers["authorization"] == f"Bearer {upstream.api_key}"


def test_sdk_with_a_jwt(gateway: GatewayServer, make_jwt: Callable[..., str]) -> None:
    client = sdk(gateway, make_jwt())
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "Hello from openai"
    assert len(client.models.list().data) == len(CHAT_GROUPS) + len(EMBEDDING_GROUPS)


def test_sdk_with_x_api_key_header(gateway: GatewayServer) -> None:
    """Anthropic-style clients send x-api-key; it is read before Authorization."""
    key = create_key(gateway.base_url, "alice")
    client = sdk(gateway, "sent-but-not-read", default_headers={"x-api-key": key})
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices  # type: ignore[arg-type]


@pytest.mark.parametrize("style", ["bearer", "BEARER", "x-api-key", "bearer-jwt"])
def test_raw_http_credentials(gateway: GatewayServer, make_jwt: Callable[..., str], style: str) -> None:
    key = create_key(gateway.base_url, "bob")
    headers = {
        "bearer": {"authorization": f"Bearer {key}"},
        "BEARER": {"authorization": f"BEARER {key}"},
        "x-api-key": {"x-api-key": key},
        "bearer-jwt": {"authorization": f"Bearer {make_jwt()}"},
    }[style]
    response = chat(gateway, headers)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello from openai"
    models = httpx.get(f"{gateway.base_url}/v1/models", headers=headers)
    assert models.status_code == 200 and models.json()["object"] == "list"


def test_anonymous_callers_may_chat_but_not_list_models(gateway: GatewayServer) -> None:
    assert chat(gateway, {}).status_code == 200
    # The SDK insists on a key; omitting the header per request makes it an anonymous caller.
    client, anonymous = sdk(gateway, "placeholder"), {"Authorization": openai.omit}
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=anonymous)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "Hello from openai"
    with pytest.raises(openai.AuthenticationError):
        client.models.list(extra_headers=anonymous)
    for path in ("/v1/models", "/models"):
        response = httpx.get(f"{gateway.base_url}{path}")
        assert_unauthenticated(response)
        assert "API key or a JWT" in response.json()["error"]["message"]


def test_anonymous_callers_refused_when_not_allowed(upstream: FakeProvider, database_url: str) -> None:  # noqa: F811
    with GatewayServer(gateway_env(upstream.env, database_url, ALLOW_ANONYMOUS="false")) as strict:
        assert_unauthenticated(chat(strict, {}))
        assert chat(strict, {"authorization": f"Bearer {create_key(strict.base_url)}"}).status_code == 200


# -- attacks ---------------------------------------------------------------------------------------


def _one_char_changed(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(body))
    return f"{head}.{b64(json.dumps({**claims, 'sub': 'admin'}).encode())}.{signature}"


ATTACKS: dict[str, Callable[[GatewayServer, Callable[..., str], rsa.RSAPrivateKey], dict[str, str]]] = {
    "alg none": lambda g, make, k: _bearer(jwt.encode({"sub": "x", "exp": time.time() + 300}, None, algorithm="none")),
    "hs256 signed with the rs256 public key": lambda g, make, k: _bearer(
        forge_hs256({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}, public_pem(k).encode())
    ),
    "expired": lambda g, make, k: _bearer(make(exp=int(time.time()) - 120)),
    "nbf in the future": lambda g, make, k: _bearer(make(nbf=int(time.time()) + 300)),
    "wrong issuer": lambda g, make, k: _bearer(make(iss="https://evil.example")),
    "wrong audience": lambda g, make, k: _bearer(make(aud="another-service")),
    "no exp": lambda g, make, k: _bearer(make(exp=None)),
    "tampered payload": lambda g, make, k: _bearer(_tampered(make())),
    "truncated token": lambda g, make, k: _bearer(make()[:-12]),
    "garbage token": lambda g, make, k: _bearer("eyJhbGciOi.garbage.garbage"),
    "garbage bearer": lambda g, make, k: _bearer("not a key at all"),
    "other vendor key": lambda g, make, k: _bearer("sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"),
    "unknown key": lambda g, make, k: _bearer(generate_key().key),
    "one character changed": lambda g, make, k: _bearer(_one_char_changed(create_key(g.base_url))),
    "revoked key": lambda g, make, k: _bearer(_revoked_key(g)),
    "unknown x-api-key": lambda g, make, k: {"x-api-key": generate_key().key},
    "empty x-api-key": lambda g, make, k: {"x-api-key": ""},
    "x-api-key wins over a good bearer": lambda g, make, k: {"x-api-key": "wrong", **_bearer(make())},
    "basic auth": lambda g, make, k: {"authorization": "Basic YWxpY2U6c2VjcmV0"},
    "empty bearer": lambda g, make, k: {"authorization": "Bearer"},
}


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _revoked_key(gateway: GatewayServer) -> str:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers=ADMIN_HEADERS, json={"user_id": "mallory"})
    key: str = response.json()["key"]
    assert chat(gateway, _bearer(key)).status_code == 200  # cached as good first
    httpx.delete(f"{gateway.base_url}/admin/keys/{response.json()['id']}", headers=ADMIN_HEADERS).raise_for_status()
    return key


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_is_refused_with_401(
    gateway: GatewayServer,
    upstream: FakeProvider,
    make_jwt: Callable[..., str],
    signing_key: rsa.RSAPrivateKey,
    attack: str,
) -> None:
    headers = ATTACKS[attack](gateway, make_jwt, signing_key)
    before = upstream.count
    assert_unauthenticated(chat(gateway, headers))
    assert_unauthenticated(httpx.get(f"{gateway.base_url}/v1/models", headers=headers))
    assert upstream.count == before  # refused before anything reached a provider


def test_sdk_sees_authentication_errors(gateway: GatewayServer, make_jwt: Callable[..., str]) -> None:
    for credential in (generate_key().key, make_jwt(exp=int(time.time()) - 120), "unused"):
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk(gateway, credential).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        assert caught.value.code == "invalid_api_key"


def test_an_expired_key_is_refused_once_it_expires(gateway: GatewayServer) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    key = create_key(gateway.base_url, "alice", expires_at=expires.isoformat())
    assert chat(gateway, _bearer(key)).status_code == 200
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
    assert_unauthenticated(chat(gateway, _bearer(key)))  # the cached entry carries the expiry


# -- models a key may use --------------------------------------------------------------------------


def test_a_key_limited_to_some_models(gateway: GatewayServer, upstream: FakeProvider) -> None:
    key = create_key(gateway.base_url, "carol", models=["gpt-4o-mini", "claude-3-5-haiku-latest"])
    client = sdk(gateway, key)
    assert [m.id for m in client.models.list().data] == ["gpt-4o-mini"]
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices  # type: ignore[arg-type]

    before = upstream.count
    for model, stream in (("gpt-4o", False), ("gpt-4o", True), ("openai/gpt-4o-mini", False)):
        response = chat(gateway, _bearer(key), {"model": model, "messages": MESSAGES, "stream": stream})
        assert response.status_code == 403
        assert response.json() == {
            "error": {
                "message": f"This API key may not use the model '{model}'.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_allowed",
            }
        }
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)  # type: ignore[arg-type]
    assert upstream.count == before

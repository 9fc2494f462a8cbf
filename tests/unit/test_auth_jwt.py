"""JWT verification: the accepted token, and every forgery or misuse refused (pure: no gateway)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from llm_gateway.auth.jwt import JwksKeys, JwtVerifier, load_public_key, looks_like_jwt
from llm_gateway.errors import AuthenticationFailed
from llm_gateway.settings import ConfigError, load_settings
from tests.identity_support import b64, forge_hs256

SECRET = "an-hmac-secret-that-is-long-enough-0123456789"
ISSUER, AUDIENCE = "https://issuer.example", "llm-gateway"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def pem(public_key: Any) -> str:
    data: bytes = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data.decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hs() -> JwtVerifier:
    return JwtVerifier(algorithm="HS256", key=SECRET, issuer=ISSUER, audience=AUDIENCE, leeway=30)


@pytest.fixture
def rs(rsa_key: rsa.RSAPrivateKey) -> JwtVerifier:
    key = load_public_key(pem(rsa_key.public_key()), "RS256")
    return JwtVerifier(algorithm="RS256", key=key, issuer=ISSUER, audience=AUDIENCE)


async def refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await verifier.subject(token)
    assert caught.value.status_code == 401
    return caught.value.message


async def test_a_valid_hs256_token_gives_its_subject(hs: JwtVerifier) -> None:
    assert await hs.subject(jwt.encode(claims(), SECRET, algorithm="HS256")) == "alice"


async def test_rs256_and_es256_tokens_verify(
    rs: JwtVerifier, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    assert await rs.subject(jwt.encode(claims(sub="bob"), rsa_key, algorithm="RS256")) == "bob"
    es = JwtVerifier(algorithm="ES256", key=load_public_key(pem(ec_key.public_key()), "ES256"))
    assert await es.subject(jwt.encode(claims(sub="carol", aud=None), ec_key, algorithm="ES256")) == "carol"


async def test_alg_none_is_refused(hs: JwtVerifier, rs: JwtVerifier) -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    assert looks_like_jwt(token)  # empty signature, still the JWT shape: refused as a JWT
    assert await refused(hs, token) == "The token is invalid."
    assert await refused(rs, token) == "The token is invalid."
    head = b64(json.dumps({"alg": "None", "typ": "JWT"}).encode())
    assert await refused(hs, f"{head}.{b64(json.dumps(claims()).encode())}.")


async def test_hs256_signed_with_the_rs256_public_key_is_refused(rs: JwtVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    """Algorithm confusion: the public key is public, so it must never work as an HMAC secret."""
    public_pem = pem(rsa_key.public_key()).encode()
    assert await refused(rs, forge_hs256(claims(), public_pem)) == "The token is invalid."
    assert await refused(rs, forge_hs256(claims(), public_pem.strip())) == "The token is invalid."


async def test_a_token_of_another_algorithm_family_is_refused(
    hs: JwtVerifier, rs: JwtVerifier, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    assert await refused(hs, jwt.encode(claims(), rsa_key, algorithm="RS256"))
    assert await refused(rs, jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert await refused(rs, jwt.encode(claims(), ec_key, algorithm="ES256"))
    assert await refused(rs, jwt.encode(claims(), rsa_key, algorithm="RS512"))  # same key, unpinned algorithm


async def test_expiry_and_not_before_are_enforced_with_leeway(hs: JwtVerifier) -> None:
    now = int(time.time())
    assert await refused(hs, jwt.encode(claims(exp=now - 60), SECRET)) == "The token has expired."
    assert await hs.subject(jwt.encode(claims(exp=now - 10), SECRET)) == "alice"  # within 30 s of leeway
    assert await refused(hs, jwt.encode(claims(nbf=now + 120), SECRET)) == "The token is not valid yet."
    assert await hs.subject(jwt.encode(claims(nbf=now + 10), SECRET)) == "alice"


@pytest.mark.parametrize(
    "bad",
    [
        {"iss": "https://evil.example"},
        {"iss": None},
        {"aud": "someone-else"},
        {"aud": None},
        {"exp": None},  # a token that never expires is not accepted
        {"sub": None},
        {"sub": ""},
        {"sub": 42},
        {"sub": "x" * 256},
        {"sub": "anon:10.0.0.1"},
        {"exp": "tomorrow"},
    ],
)
async def test_claims_that_do_not_check_out_are_refused(hs: JwtVerifier, bad: dict[str, Any]) -> None:
    token = forge_hs256(claims(**bad), SECRET.encode())
    await refused(hs, token)


async def test_tampered_truncated_and_garbage_tokens_are_refused(hs: JwtVerifier) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    head, body, signature = token.split(".")
    tampered_body = b64(json.dumps(claims(sub="admin")).encode())
    for bad in (
        f"{head}.{tampered_body}.{signature}",
        f"{head}.{body}.{signature[:-2]}",
        token[: len(token) // 2],
        f"{head}.{body}.",
        f"{head}.{body}",
        "a.b.c",
        "garbage",
        "...",
        f"{head}.{body}.{signature}.{signature}",
    ):
        await refused(hs, bad)
    assert await refused(JwtVerifier(algorithm="HS256", key="another-secret-that-is-long-enough-012345"), token)


def test_public_keys_load_from_text_escaped_text_path_and_certificate(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    text = pem(rsa_key.public_key())
    path = tmp_path / "issuer.pem"
    path.write_text(text)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(rsa_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(rsa_key, hashes.SHA256())
    )
    for value in (text, text.replace("\n", "\\n"), str(path), cert.public_bytes(serialization.Encoding.PEM).decode()):
        assert load_public_key(value, "RS256").public_numbers() == rsa_key.public_key().public_numbers()


def test_unusable_public_keys_stop_start_up(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError, match="JWT_PUBLIC_KEY"):
        load_public_key(str(tmp_path / "missing.pem"), "RS256")
    with pytest.raises(ConfigError, match="JWT_PUBLIC_KEY"):
        load_public_key("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----", "RS256")
    with pytest.raises(ConfigError, match="does not suit"):
        load_public_key(pem(rsa_key.public_key()), "ES256")


def test_verifier_from_settings(rsa_key: rsa.RSAPrivateKey) -> None:
    settings = load_settings({"GATEWAY_CONFIG": ""}).settings
    assert JwtVerifier.from_settings(settings) is None  # HS256 without a secret: JWTs refused
    settings = load_settings({"GATEWAY_CONFIG": "", "JWT_SECRET": SECRET}).settings
    assert isinstance(JwtVerifier.from_settings(settings), JwtVerifier)
    env = {"GATEWAY_CONFIG": "", "JWT_ALGORITHM": "RS256", "JWT_PUBLIC_KEY": pem(rsa_key.public_key())}
    assert isinstance(JwtVerifier.from_settings(load_settings(env).settings), JwtVerifier)


# -- JWKS ---------------------------------------------------------------------------------------


class Jwks:
    """An issuer's JWKS endpoint on loopback; ``keys`` can change between requests (rotation)."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.fail = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(500 if outer.fail else 200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, kid: str, private_key: Any) -> None:
        public = private_key.public_key()
        algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
        jwk = algorithm.to_jwk(public, as_dict=True)
        self.keys.append({**jwk, "kid": kid, "use": "sig"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


async def test_jwks_keys_are_fetched_cached_and_refreshed_on_rotation(jwks: Jwks, rsa_key: rsa.RSAPrivateKey) -> None:
    clock = FakeClock()
    verifier = JwtVerifier(algorithm="RS256", jwks=JwksKeys(jwks.url, cooldown_seconds=10, clock=clock))
    jwks.publish("one", rsa_key)
    first = jwt.encode(claims(aud=None, iss=None), rsa_key, algorithm="RS256", headers={"kid": "one"})
    assert await verifier.subject(first) == "alice"
    assert await verifier.subject(first) == "alice"
    assert jwks.fetches == 1

    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.publish("two", rotated)
    second = jwt.encode(claims(aud=None, iss=None, sub="bob"), rotated, algorithm="RS256", headers={"kid": "two"})
    clock.now += 11  # past the cooldown: an unknown kid triggers one refetch
    assert await verifier.subject(second) == "bob"
    assert jwks.fetches == 2


async def test_unknown_kids_cannot_flood_the_issuer(jwks: Jwks, rsa_key: rsa.RSAPrivateKey) -> None:
    clock = FakeClock()
    verifier = JwtVerifier(algorithm="RS256", jwks=JwksKeys(jwks.url, cooldown_seconds=10, clock=clock))
    jwks.publish("one", rsa_key)
    for index in range(20):
        token = jwt.encode(claims(aud=None, iss=None), rsa_key, algorithm="RS256", headers={"kid": f"x{index}"})
        assert await refused(verifier, token) == "The token is signed by an unknown key."
    assert jwks.fetches == 1


async def test_a_token_without_kid_needs_a_single_published_key(
    jwks: Jwks, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = jwt.encode(claims(aud=None, iss=None), rsa_key, algorithm="RS256")
    jwks.publish("only", rsa_key)
    assert await JwtVerifier(algorithm="RS256", jwks=JwksKeys(jwks.url)).subject(token) == "alice"
    jwks.publish("other", ec_key)
    await refused(JwtVerifier(algorithm="RS256", jwks=JwksKeys(jwks.url)), token)


async def test_a_failing_jwks_endpoint_keeps_the_keys_it_had(jwks: Jwks, rsa_key: rsa.RSAPrivateKey) -> None:
    clock = FakeClock()
    verifier = JwtVerifier(
        algorithm="RS256", jwks=JwksKeys(jwks.url, refresh_seconds=60, cooldown_seconds=0, clock=clock)
    )
    jwks.publish("one", rsa_key)
    token = jwt.encode(claims(aud=None, iss=None), rsa_key, algorithm="RS256", headers={"kid": "one"})
    assert await verifier.subject(token) == "alice"
    jwks.fail = True
    clock.now += 61
    another = jwt.encode(claims(aud=None, iss=None, sub="bob"), rsa_key, algorithm="RS256", headers={"kid": "one"})
    assert await verifier.subject(another) == "bob"
    assert jwks.fetches == 2


async def test_an_unreachable_jwks_refuses_tokens_with_401(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(algorithm="RS256", jwks=JwksKeys("http://127.0.0.1:9/jwks.json"))
    token = jwt.encode(claims(aud=None, iss=None), rsa_key, algorithm="RS256", headers={"kid": "one"})
    await refused(verifier, token)


async def test_a_verified_token_is_remembered_but_its_expiry_still_counts(
    hs: JwtVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = int(time.time()) + 120
    token = jwt.encode(claims(exp=exp), SECRET, algorithm="HS256")
    assert await hs.subject(token) == "alice"
    monkeypatch.setattr(jwt, "decode", lambda *args, **kwargs: pytest.fail("verified twice"))
    assert await hs.subject(token) == "alice"
    monkeypatch.setattr("llm_gateway.auth.jwt.time.time", lambda: exp + 31)  # past exp and the 30 s leeway
    assert await refused(hs, token) == "The token has expired."

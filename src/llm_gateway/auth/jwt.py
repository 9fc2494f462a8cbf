"""JWT verification with PyJWT: the algorithm is pinned by configuration, never taken from the token.

HS256/384/512 use ``JWT_SECRET``; RS*/ES* use ``JWT_PUBLIC_KEY`` (PEM text, a PEM file, or a
certificate) or ``JWT_JWKS_URL``. ``exp`` and ``sub`` are required; ``exp``/``nbf`` are checked
with ``JWT_LEEWAY_SECONDS``; ``iss``/``aud`` when configured. ``sub`` becomes the user id.
PyJWT and cryptography (~150 ms to import) are imported only once JWT verification is configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_gateway.auth.ttl_cache import Missing, TtlCache
from llm_gateway.errors import AuthenticationFailed
from llm_gateway.settings import ConfigError, Settings

log = logging.getLogger(__name__)

# Three base64url segments; an empty signature still counts, so `alg: none` tokens are refused as JWTs.
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
MAX_SUBJECT_LENGTH = 255
# A token verified once is trusted this long (its exp still checked on every use): verification
# costs ~100 us, a cache hit ~2 us. Bounded by a JWKS refresh plus this if an issuer drops a key.
VERIFIED_TTL_SECONDS = 60.0
_INVALID = "The token is invalid."
_EXPIRED = "The token has expired."


def looks_like_jwt(token: str) -> bool:
    return JWT_SHAPE.fullmatch(token) is not None


def load_public_key(value: str, algorithm: str) -> Any:
    """PEM text (``\\n`` escapes allowed, as env files often have them) or a path to a PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    text = value.replace("\\n", "\n") if "-----BEGIN" in value else _read(value)
    data = text.strip().encode()
    try:
        key: Any = (
            x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data else load_pem_public_key(data)
        )
    except ValueError as exc:
        raise ConfigError(f"JWT_PUBLIC_KEY: not a PEM public key or certificate ({exc})") from None
    expected = RSAPublicKey if algorithm.startswith("RS") else EllipticCurvePublicKey
    if not isinstance(key, expected):
        raise ConfigError(f"JWT_PUBLIC_KEY: the key does not suit JWT_ALGORITHM={algorithm}")
    return key


def _read(path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"JWT_PUBLIC_KEY: not PEM text and not a readable file: {exc.strerror}") from None


class JwksKeys:
    """The issuer's public keys from its JWKS URL, fetched in a thread (PyJWKClient blocks) and cached.

    Refetched every ``refresh_seconds``, and on an unknown ``kid`` (key rotation) at most once per
    ``cooldown_seconds``, so random kids cannot turn into a flood of fetches.
    """

    def __init__(
        self,
        url: str,
        *,
        refresh_seconds: float = 300.0,
        cooldown_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import jwt

        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=5, headers={"User-Agent": "llm-gateway"})
        self._refresh_seconds = refresh_seconds
        self._cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._keys: dict[str | None, Any] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()

    async def key_for(self, token: str) -> Any:
        import jwt

        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise AuthenticationFailed(_INVALID) from None
        if not isinstance(kid, str | None):
            raise AuthenticationFailed(_INVALID)
        if self._fetched_at is None or self._clock() - self._fetched_at >= self._refresh_seconds:
            await self._refresh()
        key = self._pick(kid)
        if key is None and self._may_retry():
            await self._refresh()
            key = self._pick(kid)
        if key is None:
            raise AuthenticationFailed("The token is signed by an unknown key.")
        return key

    def _pick(self, kid: str | None) -> Any:
        if kid is None:  # no kid: acceptable only when the issuer publishes a single key
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _may_retry(self) -> bool:
        return self._tried_at is None or self._clock() - self._tried_at >= self._cooldown_seconds

    async def _refresh(self) -> None:
        import jwt

        tried_before = self._tried_at
        async with self._lock:
            if self._tried_at != tried_before:
                return  # another request refreshed while this one waited
            self._tried_at = self._clock()
            try:
                jwk_set = await asyncio.to_thread(self._client.get_jwk_set, True)
            except (jwt.PyJWTError, OSError, ValueError) as exc:
                log.warning("cannot fetch the JWKS: %s", exc)  # keep the keys we have
                return
            self._keys = {
                jwk.key_id: jwk.key
                for jwk in jwk_set.keys
                if jwk.public_key_use in (None, "sig") and jwk.key_type in ("RSA", "EC")
            }
            self._fetched_at = self._clock()


class JwtVerifier:
    def __init__(
        self,
        *,
        algorithm: str,
        key: Any = None,
        jwks: JwksKeys | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 30.0,
    ) -> None:
        self._algorithms = [algorithm]
        self._key = key
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._verified: TtlCache[tuple[str, float]] = TtlCache()
        importlib.import_module("jwt")  # now, at start-up, rather than during the first token's request

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """None when no JWT verification is configured: then every JWT is refused."""
        algorithm = settings.jwt_algorithm
        common: dict[str, Any] = {
            "algorithm": algorithm,
            "issuer": settings.jwt_issuer,
            "audience": settings.jwt_audience,
            "leeway": settings.jwt_leeway_seconds,
        }
        if algorithm.startswith("HS"):
            if settings.jwt_secret is None:
                return None
            return cls(key=settings.jwt_secret.get_secret_value(), **common)
        if settings.jwt_public_key:
            return cls(key=load_public_key(settings.jwt_public_key, algorithm), **common)
        if settings.jwt_jwks_url:
            return cls(jwks=JwksKeys(settings.jwt_jwks_url), **common)
        return None

    async def subject(self, token: str) -> str:
        """The verified ``sub``; AuthenticationFailed (401) for anything short of a valid token."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self._verified.get(digest, VERIFIED_TTL_SECONDS)
        if not isinstance(hit, Missing):
            known, expires_at = hit
            if time.time() > expires_at + self._leeway:
                raise AuthenticationFailed(_EXPIRED)
            return known
        claims = await self._verify(token)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
            raise AuthenticationFailed(_INVALID)
        if subject.startswith("anon:"):
            raise AuthenticationFailed("The token's subject is reserved.")
        self._verified.put(digest, (subject, float(claims["exp"])))
        return subject

    async def _verify(self, token: str) -> dict[str, Any]:
        import jwt

        key = self._key if self._jwks is None else await self._jwks.key_for(token)
        try:
            return jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed(_EXPIRED) from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationFailed("The token is not valid yet.") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            # ValueError/TypeError: a key the cryptography library refuses for this token.
            raise AuthenticationFailed(_INVALID) from None

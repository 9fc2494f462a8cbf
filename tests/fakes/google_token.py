"""A fake Google OAuth 2.0 token endpoint (``POST /token``) for the Vertex AI fake, and the service-account key
files that point google-auth at it.

google-auth's service-account credentials sign a JWT assertion (RS256, ``iss`` the account's email, ``aud`` the
``token_uri``, ``scope``) with the file's private key and trade it for an access token; this endpoint checks the
signature against the public key it was given (``trust``) and the claims, as Google's does, and issues
short-lived tokens that the Vertex routes alone accept (``valid``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_PATH = "/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The audience google-auth puts in every service-account assertion, whatever the file's token_uri (Google's check).
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


class TokenServer:
    """Issued tokens and the keys trusted to ask for them; ``fail_next`` scripts the endpoint's failures."""

    def __init__(self, lifetime: int = 3600) -> None:
        self.lifetime = lifetime
        self.path = TOKEN_PATH
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}  # client email -> public key
        self._issued: dict[str, float] = {}  # token -> expiry (time.time())
        self._failures: deque[int] = deque()
        self.requests = 0

    def trust(self, email: str, public_key: Any) -> None:
        with self._lock:
            self._keys[email] = public_key

    def fail_next(self, *statuses: int) -> None:
        """The next token requests answer these statuses (Google's ``{"error", "error_description"}``)."""
        with self._lock:
            self._failures.extend(statuses)

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._issued.get(token)
        return expiry is not None and time.time() < expiry

    @property
    def issued(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self._lock:
            self.requests += 1
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            return _oauth_error(failure, "internal_failure" if failure >= 500 else "invalid_grant", "scripted failure")
        form = {name: values[0] for name, values in parse_qs(raw.decode(errors="replace")).items()}
        if form.get("grant_type") != GRANT_TYPE:
            return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type")
        problem = self._check_assertion(form.get("assertion", ""), str(request.url.with_query(None)))
        if problem is not None:
            return _oauth_error(400, "invalid_grant", problem)
        token = f"ya29.fake-{secrets.token_urlsafe(32)}"
        with self._lock:
            self._issued[token] = time.time() + self.lifetime
        body = {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}
        return web.json_response(body)

    def _check_assertion(self, assertion: str, url: str) -> str | None:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return "Invalid JWT: malformed"
        with self._lock:
            key = self._keys.get(str(unverified.get("iss")))
        if key is None:
            return "Invalid JWT Signature."  # what Google says for an unknown or deleted key
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_URI, url],
                options={"require": ["exp", "iat"]},
            )
        except jwt.InvalidAudienceError:
            return "Invalid JWT: Failed audience check."
        except jwt.PyJWTError as exc:
            return f"Invalid JWT Signature. ({exc})"
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return "Invalid OAuth scope or ID token audience provided."
        return None


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def write_service_account(path: Path, token_uri: str, server: TokenServer, *, project: str = "test-project") -> Path:
    """A new RSA key, trusted by ``server``, in a service-account key file whose ``token_uri`` is the fake's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    email = f"gateway@{project}.iam.gserviceaccount.com"
    server.trust(email, key.public_key())
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return path

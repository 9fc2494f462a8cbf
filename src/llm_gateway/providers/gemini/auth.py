"""Vertex AI's OAuth access tokens: google-auth's credentials, refreshed in a thread, off the hot path.

Credentials are resolved once, at construction (a ``credentials_file``, else application default credentials);
none found is a ``ConfigError``. google-auth is synchronous, so every token fetch runs in a worker thread (over
urllib3, which botocore already brings; google-auth's ``requests`` transport would add a second HTTP stack).
A request normally reads the cached token and nothing else. Before expiry a timer refreshes it in the background,
and a request that finds it inside the refresh window starts that refresh without waiting for it; only a request
that finds no valid token waits, on the one refresh in flight that all such requests share. A token endpoint that
fails is ``ProviderUnreachable`` (retryable: the router falls back), its message masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from llm_gateway.errors import ProviderUnreachable
from llm_gateway.providers.adapter import SecretMask
from llm_gateway.providers.gemini.wire import SCOPES
from llm_gateway.settings import ConfigError

log = logging.getLogger(__name__)

# Refresh this long before expiry (google-auth's own threshold is 3 min 45 s); short-lived tokens (tests,
# some workload identities) refresh when half their life is left.
REFRESH_MARGIN_SECONDS = 300.0
# A token this close to expiry is not sent: it might expire on the way.
EXPIRY_SKEW_SECONDS = 10.0
# After a failed background refresh, the next try waits this long (the old token still serves).
RETRY_SECONDS = 5.0
TOKEN_CONNECT_TIMEOUT = 5.0
TOKEN_READ_TIMEOUT = 15.0


def load_credentials(name: str, credentials_file: str | None) -> Any:
    """google-auth credentials scoped for Vertex AI: the service-account key file, else application default
    credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's, a metadata server)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.oauth2 import service_account

    try:
        if credentials_file:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                credentials_file, scopes=list(SCOPES)
            )
        credentials, _ = google.auth.default(scopes=list(SCOPES))
    except (DefaultCredentialsError, OSError, ValueError, KeyError) as exc:
        where = f"credentials_file {credentials_file}" if credentials_file else "application default credentials"
        reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(
            f"providers.{name}: no usable Google credentials for type vertex ({where}: {reason}); set "
            "credentials_file to a service-account key file, or GOOGLE_APPLICATION_CREDENTIALS, or run on Google Cloud"
        ) from None
    return credentials


def token_request() -> Any:
    """google-auth's urllib3 transport with bounded waits (its default has none)."""
    import urllib3
    from google.auth.transport.urllib3 import Request

    timeout = urllib3.Timeout(connect=TOKEN_CONNECT_TIMEOUT, read=TOKEN_READ_TIMEOUT)
    return Request(
        urllib3.PoolManager(  # type: ignore[no-untyped-call]
            timeout=timeout, retries=False, maxsize=1
        )
    )


class RotatingMask(SecretMask):
    """A ``SecretMask`` that also hides the access tokens issued at run time (the current and the last few)."""

    __slots__ = ("_fixed", "_tokens")
    KEEP = 4

    def __init__(self, fixed: SecretMask) -> None:
        super().__init__(())
        self._fixed = fixed
        self._tokens: list[str] = []

    def add(self, token: str) -> None:
        if token and token not in self._tokens:
            self._tokens = [token, *self._tokens][: self.KEEP]

    def __call__(self, text: str) -> str:
        for token in self._tokens:
            if token in text:
                text = text.replace(token, "***")
        return self._fixed(text)


class TokenSource:
    """The current access token of ``credentials``, fetched by ``fetch`` (google-auth's ``refresh``) in a thread."""

    def __init__(self, provider: str, credentials: Any, mask: RotatingMask, *, request: Any = None) -> None:
        """``request``: google-auth's transport (default: ``token_request()``)."""
        self._provider = provider
        self._credentials = credentials
        self._mask = mask
        self._request = request or token_request()
        self._token: str | None = None
        self._expires = 0.0  # time.monotonic()
        self._refresh_at = 0.0
        self._retry_at = 0.0
        self._task: asyncio.Task[str] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.fetches = 0  # tokens fetched so far (tests, metrics)

    async def token(self, timeout: float) -> str:
        """A valid token: the cached one (starting a background refresh when it is due), else the shared refresh
        awaited for at most ``timeout`` seconds."""
        now = time.monotonic()
        token = self._token
        if token is not None and now < self._expires - EXPIRY_SKEW_SECONDS:
            if now >= self._refresh_at and now >= self._retry_at:
                self._start()
            return token
        task = self._start()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(task)
        except TimeoutError:
            raise ProviderUnreachable(
                f"{self._provider}: the Google token endpoint did not answer in time", provider=self._provider
            ) from None

    def _start(self) -> asyncio.Task[str]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh())
            self._task.add_done_callback(_consume)
        return self._task

    async def _refresh(self) -> str:
        try:
            token, lifetime = await asyncio.to_thread(self._fetch)
        except Exception as exc:  # google-auth's RefreshError / TransportError, or anything its transport raises
            self._retry_at = time.monotonic() + RETRY_SECONDS
            detail = self._mask(str(exc))[:300]
            log.warning("%s: refreshing the Google access token failed: %s", self._provider, detail)
            raise ProviderUnreachable(
                f"{self._provider}: could not obtain a Google access token ({type(exc).__name__}: {detail})",
                provider=self._provider,
            ) from None
        finally:
            self._task = None
        now = time.monotonic()
        self._mask.add(token)
        self._token, self._expires = token, now + lifetime
        self._refresh_at = now + max(0.0, lifetime - min(REFRESH_MARGIN_SECONDS, lifetime / 2))
        self._schedule(self._refresh_at - now)
        self.fetches += 1
        return token

    def _fetch(self) -> tuple[str, float]:
        """In a worker thread: google-auth's refresh; the token and its lifetime in seconds."""
        self._credentials.refresh(self._request)
        token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise ValueError("the token endpoint answered without an access token")
        expiry = self._credentials.expiry  # naive UTC, as google-auth keeps it
        if not isinstance(expiry, datetime):
            return token, 3600.0
        return token, max(0.0, (expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds())

    def _schedule(self, delay: float) -> None:
        """The background refresh before expiry, so that requests never wait for one while traffic flows."""
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None


def _consume(task: asyncio.Task[str]) -> None:
    """A background refresh's failure is logged where it happens; the task's exception is read here."""
    with contextlib.suppress(BaseException):
        task.result()

"""Bedrock's credentials and SigV4 signatures: botocore's credential chain and signer, kept off the event loop.

The chain (explicit keys in the YAML, else environment, shared files / ``aws_profile``, SSO, container and instance
roles) is resolved once, when the provider is built; a gateway without credentials refuses to start. Credentials
that expire (roles, SSO, assumed roles) are refreshed in a thread ahead of expiry, never on the event loop:
requests sign with the last frozen copy meanwhile, and wait (without blocking the loop) only when it is about
to expire. Every secret seen, old and new, stays in the adapter's mask, and so does every signature.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from typing import Any

from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]
from botocore.session import Session  # type: ignore[import-untyped]

from llm_gateway.errors import ProviderTimeout
from llm_gateway.providers.adapter import SecretMask
from llm_gateway.providers.bedrock.wire import SERVICE
from llm_gateway.settings import ConfigError, ProviderConfig

# botocore's own windows: start a refresh 15 minutes before expiry; under 10 minutes, wait for one. A request
# signed now must stay valid for its whole exchange (SigV4 signatures stand for 5 minutes past their date).
ADVISORY_REFRESH_SECONDS = 15 * 60
MANDATORY_REFRESH_SECONDS = 10 * 60
# How often the expiry is looked at (reading it costs a clock read with a time zone: not on every request).
EXPIRY_CHECK_SECONDS = 1.0
# Secrets of earlier credentials kept masked (a message quoting an old token must not show it).
MASKED_GENERATIONS = 4
_SIGNATURE = re.compile(r"Signature=[0-9a-fA-F]{16,}")


class SigV4Mask(SecretMask):
    """The provider's secrets replaced by ``***``, and any SigV4 signature too (``Signature=***``)."""

    __slots__ = ()

    def __call__(self, text: str) -> str:
        text = super().__call__(text)
        return _SIGNATURE.sub("Signature=***", text) if "Signature=" in text else text


def resolve_credentials(name: str, config: ProviderConfig) -> Credentials:
    """The YAML's access keys, else botocore's standard chain; ``ConfigError`` naming what to set when none."""
    if config.aws_access_key_id and config.aws_secret_access_key:
        token = config.aws_session_token.get_secret_value() if config.aws_session_token else None
        return Credentials(
            config.aws_access_key_id.get_secret_value(), config.aws_secret_access_key.get_secret_value(), token
        )
    try:
        credentials = Session(profile=config.aws_profile).get_credentials()
    except BotoCoreError as exc:  # a profile that does not exist, an SSO session expired, ...
        raise ConfigError(f"providers.{name}: AWS credentials could not be loaded: {type(exc).__name__}") from None
    if credentials is None:
        raise ConfigError(
            f"providers.{name}: no AWS credentials found for type bedrock: set api_key (or "
            "AWS_BEARER_TOKEN_BEDROCK) for a Bedrock API key, or aws_access_key_id and aws_secret_access_key, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / aws_profile naming a profile of "
            "~/.aws/credentials or ~/.aws/config, or run where a role provides them"
        )
    return credentials


def freeze(name: str, credentials: Credentials) -> ReadOnlyCredentials:
    """The credentials' current values (at construction: the chain's first fetch happens here)."""
    try:
        frozen: ReadOnlyCredentials = credentials.get_frozen_credentials()
    except BotoCoreError as exc:
        raise ConfigError(f"providers.{name}: AWS credentials could not be loaded: {type(exc).__name__}") from None
    return frozen


class SigV4Signer:
    """Signs Converse requests with the current frozen credentials; refreshes them in a thread when they expire.

    ``on_new_secrets`` is told every new set of secrets (to mask them)."""

    def __init__(
        self,
        name: str,
        credentials: Credentials,
        region: str,
        *,
        on_new_secrets: Callable[[Iterable[str]], None],
        to_thread: Callable[..., Any] = asyncio.to_thread,
    ) -> None:
        self._name = name
        self._source = credentials
        self._region = region
        self._on_new_secrets = on_new_secrets
        self._to_thread = to_thread
        self._refreshable = isinstance(credentials, RefreshableCredentials)
        self._refresh: asyncio.Task[None] | None = None
        self._next_check = 0.0
        self._use(freeze(name, credentials))

    @property
    def frozen(self) -> ReadOnlyCredentials:
        return self._frozen

    def _use(self, frozen: ReadOnlyCredentials) -> None:
        self._frozen = frozen
        self._auth = SigV4Auth(frozen, SERVICE, self._region)
        self._on_new_secrets([value for value in (frozen.access_key, frozen.secret_key, frozen.token) if value])

    async def current(self, timeout: float) -> SigV4Auth:
        """The signer for the current credentials; refreshes them first (off the loop) when botocore says so,
        waiting at most ``timeout`` when they are about to expire."""
        if not self._refreshable:
            return self._auth
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._next_check:
            return self._auth
        self._next_check = now + EXPIRY_CHECK_SECONDS
        source: RefreshableCredentials = self._source
        if source.refresh_needed(MANDATORY_REFRESH_SECONDS):
            try:  # about to expire: this request waits (the loop does not)
                await asyncio.wait_for(asyncio.shield(self._start_refresh()), timeout)
            except TimeoutError:
                message = f"{self._name}: AWS credentials not refreshed in time"
                raise ProviderTimeout(message, provider=self._name) from None
            self._next_check = 0.0
        elif source.refresh_needed(ADVISORY_REFRESH_SECONDS):
            self._start_refresh()  # sign with the current ones meanwhile
        return self._auth

    def _start_refresh(self) -> asyncio.Task[None]:
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._refreshed())
        return self._refresh

    async def _refreshed(self) -> None:
        try:
            frozen: ReadOnlyCredentials = await self._to_thread(self._source.get_frozen_credentials)
        except Exception:  # BotoCoreError, or an STS ClientError: the old ones stand until they expire, then AWS
            return  # refuses them (ExpiredTokenException: the request falls back); the next check tries again
        if frozen != self._frozen:
            self._use(frozen)

    def close(self) -> None:
        """Stop a refresh in flight (its thread finishes on its own; its result is dropped)."""
        if self._refresh is not None:
            self._refresh.cancel()

    def sign(self, auth: SigV4Auth, url: str, headers: dict[str, str], payload: bytes) -> dict[str, str]:
        """The headers SigV4 adds for this request (``X-Amz-Date``, ``X-Amz-Security-Token``, ``Authorization``):
        botocore signs the method, the URL's path as sent (percent-encoded), the host, ``headers`` and the body."""
        request = AWSRequest(method="POST", url=url, headers=headers, data=payload)
        auth.add_auth(request)
        signed = request.headers
        out = {"X-Amz-Date": signed["X-Amz-Date"], "Authorization": signed["Authorization"]}
        if auth.credentials.token:
            out["X-Amz-Security-Token"] = signed["X-Amz-Security-Token"]
        return out

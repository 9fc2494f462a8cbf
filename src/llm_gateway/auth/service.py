"""Puts identity together for the app's lifespan: lookups, JWT verifier, invalidations, admin operations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from llm_gateway.auth.admin import Accounts
from llm_gateway.auth.api_keys import KeyLookup, LastUsed
from llm_gateway.auth.client_ip import parse_networks
from llm_gateway.auth.invalidation import UNHEARD_TTL_SECONDS, Invalidations
from llm_gateway.auth.jwt import JwtVerifier
from llm_gateway.auth.overrides import Defaults
from llm_gateway.auth.resolve import IdentityResolver
from llm_gateway.auth.users import UserLookup
from llm_gateway.settings import ConfigError, Settings
from llm_gateway.store.db import Database
from llm_gateway.store.redis import PrefixedRedis

# RFC 7518 3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
ADMIN_KEY_MIN_LENGTH = 16


def check_identity_settings(settings: Settings) -> None:
    """Refuse to serve with a guessable secret or a public key that cannot be loaded (ConfigError)."""
    minimum = _HMAC_MIN_BYTES.get(settings.jwt_algorithm)
    if minimum and settings.jwt_secret and len(settings.jwt_secret.get_secret_value().encode()) < minimum:
        raise ConfigError(f"JWT_SECRET: must be at least {minimum} bytes for {settings.jwt_algorithm}")
    if settings.admin_api_key and len(settings.admin_api_key.get_secret_value()) < ADMIN_KEY_MIN_LENGTH:
        raise ConfigError(f"ADMIN_API_KEY: must be at least {ADMIN_KEY_MIN_LENGTH} characters")
    JwtVerifier.from_settings(settings)


@dataclass(frozen=True, slots=True)
class AuthService:
    resolver: IdentityResolver
    users: UserLookup
    accounts: Accounts
    keys: KeyLookup
    invalidations: Invalidations
    last_used: LastUsed


@asynccontextmanager
async def open_auth(settings: Settings, database: Database, redis: PrefixedRedis | None) -> AsyncIterator[AuthService]:
    def cache_ttl() -> float:
        # Trust the cache long only while revocations are sure to reach this process.
        if invalidations.listening:
            return settings.key_cache_ttl_seconds
        return min(UNHEARD_TTL_SECONDS, settings.key_cache_ttl_seconds)

    defaults = Defaults.of(settings)
    keys = KeyLookup(database, defaults, cache_ttl)
    users = UserLookup(database, defaults, cache_ttl)

    def forget(message: str) -> None:
        kind, _, name = message.partition(":")
        if kind == "key":
            keys.forget_key(name)
        elif kind == "user":
            keys.forget_user(name)
            users.forget_user(name)
        elif kind == "team":
            keys.forget_team(name)
            users.forget_team(name)

    def forget_everything() -> None:
        keys.clear()
        users.clear()

    invalidations = Invalidations(redis, forget, forget_everything)
    last_used = LastUsed(database)
    resolver = IdentityResolver(
        keys=keys,
        users=users,
        jwt=JwtVerifier.from_settings(settings),
        last_used=last_used,
        allow_anonymous=settings.allow_anonymous,
        anonymous=Defaults(settings.anon_rate_limit_per_minute, settings.anon_monthly_token_budget),
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )
    await invalidations.start()
    last_used.start()
    try:
        yield AuthService(resolver, users, Accounts(database, invalidations), keys, invalidations, last_used)
    finally:
        await invalidations.aclose()
        await last_used.aclose()

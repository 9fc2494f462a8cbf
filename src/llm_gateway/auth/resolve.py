"""Identify the caller, exactly as DESIGN.md says, and refuse any credential that does not check out.

``x-api-key`` -> API key. ``Authorization: Bearer T`` -> JWT when T has the JWT shape, else API key.
Nothing -> anonymous (when allowed), keyed by client address. A bad credential is always a 401,
never a fallback to anonymous.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.datastructures import Headers

from llm_gateway.auth.api_keys import KeyLookup, LastUsed, looks_like_key
from llm_gateway.auth.client_ip import Address, Network, anonymous_key, client_address
from llm_gateway.auth.identity import Identity
from llm_gateway.auth.jwt import JwtVerifier, looks_like_jwt
from llm_gateway.auth.overrides import Defaults
from llm_gateway.auth.users import UserLookup
from llm_gateway.errors import AuthenticationFailed

_BAD_KEY = "Incorrect API key provided, or the key has expired or been revoked."


class IdentityResolver:
    def __init__(
        self,
        *,
        keys: KeyLookup,
        users: UserLookup,
        jwt: JwtVerifier | None,
        last_used: LastUsed,
        allow_anonymous: bool,
        anonymous: Defaults,
        trusted_proxies: Sequence[Network],
    ) -> None:
        self._keys = keys
        self._users = users
        self._jwt = jwt
        self._last_used = last_used
        self._allow_anonymous = allow_anonymous
        self._anonymous = anonymous
        self._trusted_proxies = tuple(trusted_proxies)

    async def resolve(self, headers: Headers, peer: str | None) -> Identity:
        api_key = headers.get("x-api-key")
        if api_key is not None:
            return await self.from_key(api_key.strip())
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise AuthenticationFailed("Use 'Authorization: Bearer <API key or JWT>' or 'x-api-key: <API key>'.")
            return await (self.from_jwt(token) if looks_like_jwt(token) else self.from_key(token))
        if not self._allow_anonymous:
            raise AuthenticationFailed("This gateway needs an API key or a JWT: send 'Authorization: Bearer ...'.")
        forwarded_for = ",".join(headers.getlist("x-forwarded-for")) or None
        return self.anonymous(client_address(peer, forwarded_for, self._trusted_proxies))

    async def from_key(self, key: str) -> Identity:
        if not looks_like_key(key):
            raise AuthenticationFailed(_BAD_KEY)
        record = await self._keys.find(key)
        if record is None or not record.usable(time.time()):
            raise AuthenticationFailed(_BAD_KEY)
        assert record.identity.key_id is not None
        self._last_used.note(record.identity.key_id)
        return record.identity

    async def from_jwt(self, token: str) -> Identity:
        if self._jwt is None:
            raise AuthenticationFailed("JWT authentication is not configured on this gateway.")
        return await self._users.identity(await self._jwt.subject(token))

    def anonymous(self, address: Address | None) -> Identity:
        return Identity(
            user_id=f"anon:{anonymous_key(address)}",
            kind="anonymous",
            rate_limit_per_minute=self._anonymous.rate_limit_per_minute,
            monthly_token_budget=self._anonymous.monthly_token_budget,
        )

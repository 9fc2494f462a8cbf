"""``/admin``: API keys, users' and teams' limits, usage reports. Bearer ``ADMIN_API_KEY``.

The key is checked by ``AdminGuard``, a plain ASGI middleware in the app's front door, so that a request
without it is refused before anything looks at its body: 404 when the admin API is off, 401 with a wrong key.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi import APIRouter, Request
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.api.deps import AccountsDep
from llm_gateway.api.exact_json import ExactNumbersRoute
from llm_gateway.api.usage import MonthQuery, identity_report, ledger_and_limits, parse_month
from llm_gateway.asgi import route_path
from llm_gateway.auth.admin import (
    KeyCreate,
    KeyCreated,
    KeyLimits,
    KeyList,
    KeyPublic,
    TeamLimits,
    TeamPublic,
    UserLimits,
    UserPublic,
    check_team_id,
)
from llm_gateway.auth.service import AuthService
from llm_gateway.errors import AuthenticationFailed, FrameworkError, GatewayError
from llm_gateway.reports import ScopeMonth, UsageReport, team_month
from llm_gateway.schemas.openai import ErrorEnvelope

# Exact numbers: a US dollar budget sent as a JSON number is read from its text, never through a float.
router = APIRouter(prefix="/admin", tags=["admin"], route_class=ExactNumbersRoute)
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorEnvelope} for status in (400, 401, 404, 503)}


class TeamReport(TeamPublic):
    """``GET /admin/teams/{id}``: the team's settings, its member count, and its month."""

    usage: ScopeMonth


@router.post("/keys", status_code=201, response_model=KeyCreated, responses=_ERRORS, summary="Create an API key")
async def create_key(body: KeyCreate, accounts: AccountsDep) -> KeyCreated:
    return await accounts.create_key(body)


@router.get("/keys", response_model=KeyList, responses=_ERRORS, summary="List API keys (never their secrets)")
async def list_keys(accounts: AccountsDep, user_id: str | None = None) -> KeyList:
    return KeyList(data=await accounts.list_keys(user_id))


@router.patch("/keys/{key_id}", response_model=KeyPublic, responses=_ERRORS, summary="Change an API key's limits")
async def set_key(key_id: str, body: KeyLimits, accounts: AccountsDep) -> KeyPublic:
    key = await accounts.set_key(key_id, body)
    if key is None:
        raise FrameworkError(f"No API key with id '{key_id}'.", status=404)
    return key


@router.get("/usage", response_model=UsageReport, responses=_ERRORS, summary="A user's usage and spend for a month")
async def user_usage(request: Request, user_id: str, month: MonthQuery = None) -> UsageReport:
    auth: AuthService = request.app.state.auth
    return await identity_report(request, await auth.users.identity(user_id), month)


@router.delete("/keys/{key_id}", response_model=KeyPublic, responses=_ERRORS, summary="Revoke an API key")
async def revoke_key(key_id: str, accounts: AccountsDep) -> KeyPublic:
    key = await accounts.revoke_key(key_id)
    if key is None:
        raise FrameworkError(f"No API key with id '{key_id}'.", status=404)
    return key


@router.put("/users/{user_id:path}", response_model=UserPublic, responses=_ERRORS, summary="Set a user's limits")
async def set_user(user_id: str, body: UserLimits, accounts: AccountsDep) -> UserPublic:
    return await accounts.set_user(user_id, body)


@router.get("/users/{user_id:path}", response_model=UserPublic, responses=_ERRORS, summary="Read a user's limits")
async def get_user(user_id: str, accounts: AccountsDep) -> UserPublic:
    user = await accounts.get_user(user_id)
    if user is None:
        raise FrameworkError(f"No user '{user_id}' has been configured.", status=404)
    return user


@router.put(
    "/teams/{team_id:path}", response_model=TeamPublic, responses=_ERRORS, summary="Create a team or set its limits"
)
async def set_team(team_id: str, body: TeamLimits, accounts: AccountsDep) -> TeamPublic:
    return await accounts.set_team(check_team_id(team_id), body)


@router.get("/teams/{team_id:path}", response_model=TeamReport, responses=_ERRORS, summary="A team's limits and month")
async def get_team(request: Request, team_id: str, accounts: AccountsDep, month: MonthQuery = None) -> TeamReport:
    team = await accounts.get_team(team_id)
    if team is None:
        raise FrameworkError(f"No team '{team_id}'.", status=404)
    usage = await team_month(
        team_id, team.monthly_token_budget, team.monthly_budget_usd, parse_month(month), *ledger_and_limits(request)
    )
    return TeamReport(**dict(team), usage=usage)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class AdminGuard:
    """Every ``/admin`` request needs ``Authorization: Bearer <ADMIN_API_KEY>``, compared in constant time."""

    def __init__(self, app: ASGIApp, admin_api_key: SecretStr | None) -> None:
        self.app = app
        self._expected = _digest(admin_api_key.get_secret_value()) if admin_api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if path == "/admin" or path.startswith("/admin/"):
            refusal = self._refusal(scope)
            if refusal is not None:
                await _send_error(send, refusal)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> GatewayError | None:
        if self._expected is None:
            return FrameworkError("Not Found", status=404)
        authorization = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(_digest(token.strip()), self._expected):
            return None
        return AuthenticationFailed("The admin API needs 'Authorization: Bearer <ADMIN_API_KEY>'.")


async def _send_error(send: Send, error: GatewayError) -> None:
    body = error.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})

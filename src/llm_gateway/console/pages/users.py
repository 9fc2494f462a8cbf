"""Users: each one's month against their budgets (bars), and a user's overrides and team, edited.

A user's budgets are their overrides over the configured defaults (``auth/overrides.py``), the same rule the
gateway admits requests by; the month is read from the ledger (``ConsoleQueries.users_month``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from llm_gateway.api.usage import ledger_and_limits, parse_month
from llm_gateway.auth.admin import UserLimits, UserPublic
from llm_gateway.auth.overrides import Defaults
from llm_gateway.auth.users import load_user_identity
from llm_gateway.console.deps import AccountsDep, Console, ConsoleDep, ConsoleRoute, PostedDep, SignedInDep
from llm_gateway.console.forms import LIMIT_LABELS, Form, FormError, limit_fields, limit_values, messages
from llm_gateway.console.session import SignedIn
from llm_gateway.errors import InvalidRequest
from llm_gateway.pricing import ZERO
from llm_gateway.reports import caller_report

router = APIRouter(route_class=ConsoleRoute)
LABELS = {"team_id": "Team", **LIMIT_LABELS}


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user's month next to the budgets that apply to them (their overrides, else the defaults)."""

    user_id: str
    team_id: str | None
    configured: bool  # has a row of overrides (or a team, or a key)
    requests: int
    used_tokens: int
    spend_usd: Decimal
    token_budget: int
    usd_budget: Decimal | None
    rate_limit_per_minute: int


def user_rows(
    users: list[UserPublic], months: dict[str, tuple[str | None, int, int, Decimal]], defaults: Defaults
) -> list[UserRow]:
    by_id = {user.user_id: user for user in users}
    rows = []
    for user_id in sorted(set(by_id) | set(months)):
        user = by_id.get(user_id)
        team, requests, tokens, spend = months.get(user_id, (None, 0, 0, ZERO))
        rows.append(
            UserRow(
                user_id=user_id,
                team_id=user.team_id if user else team,
                configured=user is not None,
                requests=requests,
                used_tokens=tokens,
                spend_usd=spend,
                token_budget=_first(user.monthly_token_budget if user else None, defaults.monthly_token_budget),
                usd_budget=_usd(user.monthly_budget_usd if user else None, defaults.monthly_budget_usd),
                rate_limit_per_minute=_first(
                    user.rate_limit_per_minute if user else None, defaults.rate_limit_per_minute
                ),
            )
        )
    return rows


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


def _usd(value: Decimal | None, default: Decimal | None) -> Decimal | None:
    return default if value is None else value


@router.get("/ui/users", response_class=HTMLResponse, include_in_schema=False)
async def users_page(
    request: Request, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, month: str | None = None
) -> HTMLResponse:
    chosen = parse_month(month or None)
    months = {
        m.user_id: (m.team_id, m.requests, m.used_tokens, m.spend_usd)
        for m in await console.queries.users_month(chosen)
    }
    rows = user_rows(await accounts.list_users(), months, Defaults.of(console.settings))
    context = {"rows": rows, "month": chosen}
    return console.pages.render(request, "users.html", context, signed_in=session, current="users")


def _user_id(value: str | None) -> str:
    if not value or len(value) > 255 or not value.isprintable() or value.startswith("anon:"):
        raise InvalidRequest("A user id is 1 to 255 printable characters, not starting with 'anon:'.", param="id")
    return value


async def _user_page(
    request: Request,
    console: Console,
    session: SignedIn,
    accounts: AccountsDep,
    user_id: str,
    *,
    errors: list[str] | None = None,
    values: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    user = await accounts.get_user(user_id)
    identity = await load_user_identity(request.app.state.database, user_id, Defaults.of(console.settings))
    report = await caller_report(identity, parse_month(None), *ledger_and_limits(request))
    if values is None:
        values = {**limit_values(user), "team_id": (user.team_id if user else None) or ""}
    context = {
        "user_id": user_id,
        "user": user,
        "identity": identity,
        "report": report,
        "teams": await accounts.list_teams(),
        "keys": await accounts.list_keys(user_id),
        "values": values,
        "errors": errors or [],
        "notice": notice,
    }
    return console.pages.render(request, "user.html", context, signed_in=session, current="users", status=status)


@router.get("/ui/users/edit", response_class=HTMLResponse, include_in_schema=False)
async def user_page(
    request: Request, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, id: str = "", saved: str = ""
) -> HTMLResponse:
    notice = "Saved: every gateway process applies it within a second." if saved else None
    return await _user_page(request, console, session, accounts, _user_id(id.strip()), notice=notice)


@router.post("/ui/users/edit", include_in_schema=False)
async def set_user(
    request: Request, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, form: PostedDep
) -> Response:
    user_id = _user_id(form.text("user_id"))
    try:
        await accounts.set_user(user_id, _user_limits(form))
    except (FormError, InvalidRequest) as error:
        found = error.messages if isinstance(error, FormError) else [error.message]
        values = {
            name: form.fields.get(name, "") for name in ("monthly_token_budget", "monthly_budget_usd", "rpm", "team_id")
        }
        return await _user_page(request, console, session, accounts, user_id, errors=found, values=values, status=400)
    return RedirectResponse(f"/ui/users/edit?id={quote(user_id, safe='')}&saved=1", status_code=303)


def _user_limits(form: Form) -> UserLimits:
    try:
        return UserLimits.model_validate({**limit_fields(form), "team_id": form.text("team_id")})
    except ValidationError as error:
        raise FormError(messages(error, LABELS)) from None

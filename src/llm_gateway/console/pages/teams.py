"""Teams: each team's month against its budgets (bars), a new team, a team's budgets and request rate edited.

A team's month is what ``GET /admin/teams/{id}`` reports (``reports.team_month``): its rows in the ledger and
what its requests in flight hold.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from llm_gateway.api.usage import ledger_and_limits, parse_month
from llm_gateway.auth.admin import TeamLimits, TeamPublic, check_team_id
from llm_gateway.console.deps import AccountsDep, Console, ConsoleDep, ConsoleRoute, PostedDep, SignedInDep
from llm_gateway.console.forms import LIMIT_LABELS, Form, FormError, limit_fields, limit_values, messages
from llm_gateway.console.session import SignedIn
from llm_gateway.errors import FrameworkError, InvalidRequest
from llm_gateway.reports import ScopeMonth, team_month

router = APIRouter(route_class=ConsoleRoute)
_FIELDS = ("team_id", "monthly_token_budget", "monthly_budget_usd", "rpm")


async def _month(request: Request, team: TeamPublic, month: str) -> ScopeMonth:
    return await team_month(
        team.team_id, team.monthly_token_budget, team.monthly_budget_usd, month, *ledger_and_limits(request)
    )


async def _teams_page(
    request: Request,
    console: Console,
    session: SignedIn,
    accounts: AccountsDep,
    *,
    month: str | None = None,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    chosen = parse_month(month or None)
    teams = await accounts.list_teams()
    context = {
        "rows": [(team, await _month(request, team, chosen)) for team in teams],
        "month": chosen,
        "values": values or dict.fromkeys(_FIELDS, ""),
        "errors": errors or [],
    }
    return console.pages.render(request, "teams.html", context, signed_in=session, current="teams", status=status)


@router.get("/ui/teams", response_class=HTMLResponse, include_in_schema=False)
async def teams_page(
    request: Request, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, month: str | None = None
) -> HTMLResponse:
    return await _teams_page(request, console, session, accounts, month=month)


def _team_limits(form: Form) -> TeamLimits:
    try:
        return TeamLimits.model_validate(limit_fields(form))
    except ValidationError as error:
        raise FormError(messages(error, LIMIT_LABELS)) from None


@router.post("/ui/teams", include_in_schema=False)
async def create_team(
    request: Request, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, form: PostedDep
) -> Response:
    try:
        team_id = check_team_id(form.text("team_id") or "")
        limits = _team_limits(form)
        if await accounts.get_team(team_id) is not None:
            raise FormError([f"Team '{team_id}' exists already: change it on its own page."])
    except (FormError, InvalidRequest) as error:
        found = error.messages if isinstance(error, FormError) else [error.message]
        values = {name: form.fields.get(name, "") for name in _FIELDS}
        return await _teams_page(request, console, session, accounts, values=values, errors=found, status=400)
    await accounts.set_team(team_id, limits)
    return RedirectResponse(f"/ui/teams/edit?id={quote(team_id, safe='')}&saved=1", status_code=303)


async def _team_page(
    request: Request,
    console: Console,
    session: SignedIn,
    team: TeamPublic,
    *,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    if values is None:
        values = limit_values(team)
    context = {
        "team": team,
        "usage": await _month(request, team, parse_month(None)),
        "values": values,
        "errors": errors or [],
        "notice": notice,
    }
    return console.pages.render(request, "team.html", context, signed_in=session, current="teams", status=status)


async def _team_or_404(accounts: AccountsDep, team_id: str | None) -> TeamPublic:
    team = await accounts.get_team(team_id or "")
    if team is None:
        raise FrameworkError(f"No team '{team_id}'.", status=404)
    return team


@router.get("/ui/teams/edit", response_class=HTMLResponse, include_in_schema=False)
async def team_page(
    request: Request, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, id: str = "", saved: str = ""
) -> HTMLResponse:
    team = await _team_or_404(accounts, id)
    notice = "Saved: every gateway process applies it within a second." if saved else None
    return await _team_page(request, console, session, team, notice=notice)


@router.post("/ui/teams/edit", include_in_schema=False)
async def set_team(
    request: Request, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, form: PostedDep
) -> Response:
    team = await _team_or_404(accounts, form.text("team_id"))
    try:
        limits = _team_limits(form)
    except FormError as error:
        values = {name: form.fields.get(name, "") for name in _FIELDS}
        return await _team_page(request, console, session, team, values=values, errors=error.messages, status=400)
    await accounts.set_team(team.team_id, limits)
    return RedirectResponse(f"/ui/teams/edit?id={quote(team.team_id, safe='')}&saved=1", status_code=303)

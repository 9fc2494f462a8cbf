"""API keys: the list (never a secret), creation (the secret shown once, on the answer to the POST), a key's own
limits, and revocation after a confirmation step.

The new secret is rendered into that one answer only: not stored in the session, not put in a URL, never
shown again (the list and every later page have the prefix only).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from llm_gateway.auth.admin import KeyCreate, KeyLimits, KeyPublic
from llm_gateway.console.deps import AccountsDep, Console, ConsoleDep, ConsoleRoute, PostedDep, SignedInDep
from llm_gateway.console.forms import LIMIT_LABELS, Form, FormError, limit_fields, limit_values, messages
from llm_gateway.console.session import SignedIn
from llm_gateway.errors import FrameworkError

router = APIRouter(route_class=ConsoleRoute)
LABELS = {"user_id": "User", "name": "Name", "models": "Models", "expires_at": "Expires", **LIMIT_LABELS}
_CREATE_FIELDS = ("user_id", "name", "models", "monthly_token_budget", "monthly_budget_usd", "rpm", "expires_at")


def key_state(key: KeyPublic, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _new_key(form: Form) -> KeyCreate:
    try:
        fields = {
            "user_id": form.text("user_id") or "",
            "name": form.text("name"),
            "models": form.names("models"),
            "expires_at": form.moment("expires_at", LABELS["expires_at"]),
            **limit_fields(form),
        }
        return KeyCreate.model_validate({name: value for name, value in fields.items() if value is not None})
    except ValidationError as error:
        raise FormError(messages(error, LABELS)) from None


async def _list_page(
    request: Request,
    console: Console,
    session: SignedIn,
    accounts: AccountsDep,
    *,
    user: str | None = None,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    keys = list(reversed(await accounts.list_keys(user or None)))  # newest first
    now = datetime.now(UTC)
    context = {
        "keys": [(key, key_state(key, now)) for key in keys],
        "user": user or "",
        "values": values or dict.fromkeys(_CREATE_FIELDS, ""),
        "errors": errors or [],
        "notice": notice,
    }
    return console.pages.render(request, "keys.html", context, signed_in=session, current="keys", status=status)


@router.get("/ui/keys", response_class=HTMLResponse, include_in_schema=False)
async def keys_page(
    request: Request,
    console: ConsoleDep,
    session: SignedInDep,
    accounts: AccountsDep,
    user: str | None = None,
    revoked: str | None = None,
) -> HTMLResponse:
    shown = revoked if revoked and revoked.isascii() and revoked.isalnum() else None  # an id, not any text
    notice = f"Key {shown} is revoked: requests with it now get 401." if shown else None
    return await _list_page(request, console, session, accounts, user=user, notice=notice)


@router.post("/ui/keys", response_class=HTMLResponse, include_in_schema=False)
async def create_key(
    request: Request, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, form: PostedDep
) -> HTMLResponse:
    try:
        created = await accounts.create_key(_new_key(form))
    except FormError as error:
        values = {name: form.fields.get(name, "") for name in _CREATE_FIELDS}
        return await _list_page(request, console, session, accounts, values=values, errors=error.messages, status=400)
    # The only page that ever holds the secret: the answer to this POST (no-store, like every console page).
    return console.pages.render(request, "key_created.html", {"key": created}, signed_in=session, current="keys")


async def _key_or_404(accounts: AccountsDep, key_id: str) -> KeyPublic:
    key = await accounts.get_key(key_id)
    if key is None:
        raise FrameworkError(f"No API key with id '{key_id}'.", status=404)  # ConsoleRoute: a 404 page
    return key


def _key_page(
    request: Request,
    console: Console,
    session: SignedIn,
    key: KeyPublic,
    *,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    if values is None:
        values = limit_values(key)
    context = {"key": key, "state": key_state(key, datetime.now(UTC)), "values": values, "errors": errors or []}
    context["notice"] = notice
    return console.pages.render(request, "key.html", context, signed_in=session, current="keys", status=status)


@router.get("/ui/keys/{key_id}", response_class=HTMLResponse, include_in_schema=False)
async def key_page(
    request: Request, key_id: str, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, saved: str = ""
) -> HTMLResponse:
    key = await _key_or_404(accounts, key_id)
    return _key_page(request, console, session, key, notice="Limits saved." if saved else None)


@router.post("/ui/keys/{key_id}", include_in_schema=False)
async def set_key_limits(
    request: Request, key_id: str, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, form: PostedDep
) -> Response:
    key = await _key_or_404(accounts, key_id)
    try:
        try:
            limits = KeyLimits.model_validate(limit_fields(form))
        except ValidationError as error:
            raise FormError(messages(error, LABELS)) from None
    except FormError as error:
        values = {name: form.fields.get(name, "") for name in ("monthly_token_budget", "monthly_budget_usd", "rpm")}
        return _key_page(request, console, session, key, values=values, errors=error.messages, status=400)
    await accounts.set_key(key_id, limits)
    return RedirectResponse(f"/ui/keys/{key_id}?saved=1", status_code=303)


@router.get("/ui/keys/{key_id}/revoke", response_class=HTMLResponse, include_in_schema=False)
async def confirm_revoke(
    request: Request, key_id: str, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep
) -> HTMLResponse:
    key = await _key_or_404(accounts, key_id)
    context = {"key": key, "state": key_state(key, datetime.now(UTC))}
    return console.pages.render(request, "key_revoke.html", context, signed_in=session, current="keys")


@router.post("/ui/keys/{key_id}/revoke", include_in_schema=False)
async def revoke_key(
    request: Request, key_id: str, console: ConsoleDep, session: SignedInDep, accounts: AccountsDep, form: PostedDep
) -> Response:
    await _key_or_404(accounts, key_id)
    await accounts.revoke_key(key_id)
    return RedirectResponse(f"/ui/keys?revoked={key_id}", status_code=303)

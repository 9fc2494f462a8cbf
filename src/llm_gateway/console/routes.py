"""``/ui``: the console's router: sign-in and sign-out, its static files, and every page (``pages/``).

Included by ``app.py`` only when ``ADMIN_API_KEY`` is set; without it ``/ui`` is a 404 like any unknown path.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from llm_gateway.console.deps import SIGN_IN_PATH, ConsoleDep, ConsoleRoute, ConsoleStop, PostedDep, SignedInDep
from llm_gateway.console.forms import FormError, parse_body
from llm_gateway.console.pages import keys, overview, requests, teams, usage, users
from llm_gateway.console.security import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    clear_cookie,
    client_of,
    is_https,
    set_cookie,
)
from llm_gateway.console.session import new_token, same_secret

router = APIRouter(route_class=ConsoleRoute)
_SIGN_IN_TOKEN_SECONDS = 3600


def _sign_in_page(
    request: Request, console: ConsoleDep, *, token: str, error: str | None = None, status: int = 200
) -> Response:
    response = console.pages.render(
        request, "sign_in.html", {"token": token, "error": error}, signed_in=None, status=status
    )
    set_cookie(
        response, SIGN_IN_COOKIE, token, max_age=_SIGN_IN_TOKEN_SECONDS, secure=is_https(request, console.proxies)
    )
    return response


@router.get("/ui/sign-in", include_in_schema=False)
async def sign_in_form(request: Request, console: ConsoleDep) -> Response:
    if await console.sessions.find(request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse("/ui", status_code=303)
    return _sign_in_page(request, console, token=new_token())


@router.post("/ui/sign-in", include_in_schema=False)
async def sign_in(request: Request, console: ConsoleDep) -> Response:
    """The admin key, compared in constant time; failures are counted per client address (429 past the limit)."""
    client = client_of(request, console.proxies)
    retry_after = console.limiter.retry_after(client)
    if retry_after is not None:
        text = "Too many failed sign-ins from your address. Wait a minute, then try again."
        refusal = console.pages.message(request, 429, "Too many attempts", text)
        refusal.headers["retry-after"] = str(int(retry_after + 0.999))
        return refusal
    try:
        fields = parse_body(await request.body())
    except FormError:
        fields = {}
    expected = request.cookies.get(SIGN_IN_COOKIE)
    if not expected or not same_secret(fields.get("csrf"), expected):
        text = "The sign-in form's security token is missing or wrong (are cookies on?). Reload the page and try again."
        return console.pages.message(request, 403, "Refused", text)
    if not same_secret(fields.get("admin_key", ""), console.admin_api_key.get_secret_value()):
        console.limiter.failed(client)
        return _sign_in_page(request, console, token=expected, error="That is not the admin key.", status=401)
    signed_in = await console.sessions.create()
    response = RedirectResponse("/ui", status_code=303)
    secure = is_https(request, console.proxies)
    max_age = int(console.sessions.lifetime.total_seconds())
    set_cookie(response, SESSION_COOKIE, signed_in.session_id, max_age=max_age, secure=secure)
    clear_cookie(response, SIGN_IN_COOKIE, secure=secure)
    return response


@router.post("/ui/sign-out", include_in_schema=False)
async def sign_out(request: Request, console: ConsoleDep, session: SignedInDep, form: PostedDep) -> Response:
    await console.sessions.end(session.session_id)
    response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    clear_cookie(response, SESSION_COOKIE, secure=is_https(request, console.proxies))
    return response


@router.get("/ui/static/{digest}/{name:path}", include_in_schema=False)
async def static_file(request: Request, console: ConsoleDep, digest: str, name: str) -> Response:
    found = console.assets.response(digest, name)
    if found is None:
        raise ConsoleStop(console.pages.message(request, 404, "Not found", "There is no such file."))
    return found


for module in (overview, keys, users, teams, usage, requests):
    router.include_router(module.router)


@router.get("/ui/{rest:path}", response_class=HTMLResponse, include_in_schema=False)
async def not_found(request: Request, console: ConsoleDep, rest: str) -> HTMLResponse:
    return console.pages.message(request, 404, "Not found", "The console has no such page.")

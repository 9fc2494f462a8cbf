"""What every console route shares: the ``Console`` (pages, sessions, limits), the signed-in check, CSRF-checked forms.

``ConsoleRoute`` turns what a route raises into a page: ``ConsoleStop`` carries its own answer (a redirect to the
sign-in, a 403), a ``GatewayError`` (the database down, an unknown team) becomes a page with its status, and
every answer gets the console's headers (``security.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import RedirectResponse, Response

from llm_gateway.auth.admin import Accounts
from llm_gateway.auth.client_ip import parse_networks
from llm_gateway.console.assets import Assets
from llm_gateway.console.forms import Form, FormError, parse_body
from llm_gateway.console.queries import ConsoleQueries
from llm_gateway.console.render import Pages
from llm_gateway.console.security import SESSION_COOKIE, secure_headers
from llm_gateway.console.session import Sessions, SignedIn, SignInLimiter, same_secret
from llm_gateway.errors import GatewayError
from llm_gateway.settings import Settings
from llm_gateway.store.db import Database

log = logging.getLogger(__name__)
SIGN_IN_PATH = "/ui/sign-in"


class Console:
    """The console of one app: built with the app, given its database when the lifespan opens it (``attach``)."""

    def __init__(self, settings: Settings, admin_api_key: SecretStr) -> None:
        self.settings = settings
        self.admin_api_key = admin_api_key
        self.proxies = parse_networks(settings.trusted_proxies)
        self.assets = Assets()
        self.pages = Pages(self.assets)
        self.limiter = SignInLimiter()
        self._sessions: Sessions | None = None
        self._queries: ConsoleQueries | None = None

    def attach(self, database: Database) -> None:
        self._sessions = Sessions(database)
        self._queries = ConsoleQueries(database)

    @property
    def sessions(self) -> Sessions:
        assert self._sessions is not None, "the console is attached to the database in the app's lifespan"
        return self._sessions

    @property
    def queries(self) -> ConsoleQueries:
        assert self._queries is not None, "the console is attached to the database in the app's lifespan"
        return self._queries


class ConsoleStop(Exception):
    """Stop handling the request and send ``response`` (raised from dependencies and helpers)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _error_page(request: Request, status: int, text: str) -> Response:
    title = {400: "Not accepted", 404: "Not found", 503: "Unavailable"}.get(status, "Error")
    pages: Pages = request.app.state.console.pages
    return pages.message(request, status, title, text)


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except ConsoleStop as stop:
                response = stop.response
            except GatewayError as error:
                response = _error_page(request, error.status_code, error.message)
            except (SQLAlchemyError, OSError) as error:  # the sessions' and accounts' reads: a 503, as the API says
                log.warning("console: database unavailable: %s", type(error).__name__)
                response = _error_page(request, 503, "The database is unavailable; try again shortly.")
            return secure_headers(response)

        return console_handler


async def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(_console)]


async def _signed_in(request: Request, console: ConsoleDep) -> SignedIn:
    session = await console.sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return session
    if request.method in ("GET", "HEAD"):
        raise ConsoleStop(RedirectResponse(SIGN_IN_PATH, status_code=303))
    text = "Your session has ended or was never started: sign in again."
    raise ConsoleStop(console.pages.message(request, 403, "Signed out", text))


SignedInDep = Annotated[SignedIn, Depends(_signed_in)]


async def _posted(request: Request, console: ConsoleDep, session: SignedInDep) -> Form:
    """The form, once its CSRF token has been checked: a POST without the session's token is refused (403)."""
    try:
        fields = parse_body(await request.body())
    except FormError:
        fields = {}
    if not same_secret(fields.get("csrf"), session.csrf_token):
        text = "The form's security token is missing or wrong. Reload the page and try again."
        raise ConsoleStop(console.pages.message(request, 403, "Refused", text, signed_in=session))
    return Form(fields)


PostedDep = Annotated[Form, Depends(_posted)]


async def _accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.auth.accounts
    return accounts


AccountsDep = Annotated[Accounts, Depends(_accounts)]

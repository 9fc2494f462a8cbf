"""Pages from the Jinja2 templates in ``templates/``: escaping on, the console's number formats as filters.

Every page extends ``base.html`` (the nav, the sign-out form, the stylesheet and the deferred script). Numbers
and dates are formatted here, once: US dollars exactly as the ledger holds them, times in UTC.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from llm_gateway.console.assets import Assets
from llm_gateway.console.session import SignedIn

NAV = (
    ("overview", "/ui", "Overview"),
    ("keys", "/ui/keys", "Keys"),
    ("users", "/ui/users", "Users"),
    ("teams", "/ui/teams", "Teams"),
    ("usage", "/ui/usage", "Usage"),
    ("requests", "/ui/requests", "Requests"),
)


def number(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def usd(value: Decimal | None) -> str:
    """``$1,234.50``, ``$0.000123``: at least cents, and every micro-dollar the ledger holds."""
    if value is None:
        return "—"
    text = f"{value.normalize():,f}"
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def percent(part: int | float, whole: int | float) -> str:
    return "—" if not whole else f"{100 * part / whole:.1f}%"


def gauge(used: int | Decimal, budget: int | Decimal | None) -> dict[str, float] | None:
    """A ``<meter>``'s numbers for a budget: warning from three quarters, alarm from nine tenths."""
    if budget is None:
        return None
    top = float(budget) or 1.0  # a budget of 0: anything used is over it
    return {"max": top, "low": 0.75 * top, "high": 0.9 * top, "value": min(float(used), top)}


def milliseconds(value: int | None) -> str:
    return "—" if value is None else f"{value:,} ms"


class Pages:
    """Renders a template into an HTML answer with what every page needs (the session's CSRF token, the nav)."""

    def __init__(self, assets: Assets) -> None:
        environment = Environment(
            loader=PackageLoader("llm_gateway.console", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,  # a name missing from a page's context is a bug, not an empty string
            trim_blocks=True,
            lstrip_blocks=True,
        )
        environment.filters.update(number=number, usd=usd, when=when, ms=milliseconds)
        environment.globals.update(static=assets.url, nav=NAV, percent=percent, gauge=gauge)
        self._templates = Jinja2Templates(env=environment)

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        *,
        signed_in: SignedIn | None,
        current: str = "",
        status: int = 200,
    ) -> HTMLResponse:
        values = {"csrf": signed_in.csrf_token if signed_in else "", "signed_in": signed_in is not None}
        values |= {"current": current, **(context or {})}
        response = self._templates.TemplateResponse(request, name, values, status_code=status)
        assert isinstance(response, HTMLResponse)
        return response

    def message(
        self, request: Request, status: int, title: str, text: str, *, signed_in: SignedIn | None = None
    ) -> HTMLResponse:
        """A page that says one thing: a refusal, an error, a page that does not exist."""
        context = {"title": title, "text": text, "status": status}
        return self.render(request, "message.html", context, signed_in=signed_in, status=status)

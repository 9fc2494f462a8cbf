"""The request log: ledger rows newest first, filtered by a GET form, paged by an opaque cursor.

The ledger holds no prompt and no answer, so neither can appear here: only who, which model and provider, the
status, tokens, cost, latency and attempts of each request.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from llm_gateway.console.deps import ConsoleDep, ConsoleRoute, SignedInDep
from llm_gateway.console.queries import RequestFilters
from llm_gateway.errors import InvalidRequest

router = APIRouter(route_class=ConsoleRoute)
FILTERS = ("user", "key", "model", "provider", "status", "cached", "endpoint")
PAGE_SIZE = 50


def _status(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or not 100 <= int(value) <= 599:
        raise InvalidRequest("Status: an HTTP status such as 200 or 429.", param="status")
    return int(value)


def filters_of(values: dict[str, str]) -> RequestFilters:
    cached = values.get("cached", "")
    return RequestFilters(
        user_id=values.get("user") or None,
        key_id=values.get("key") or None,
        model_group=values.get("model") or None,
        provider=values.get("provider") or None,
        status=_status(values.get("status")),
        cached={"yes": True, "no": False}.get(cached),
        endpoint=values.get("endpoint") or None,
    )


@router.get("/ui/requests", response_class=HTMLResponse, include_in_schema=False)
async def requests_page(
    request: Request, console: ConsoleDep, session: SignedInDep, cursor: str | None = None
) -> HTMLResponse:
    values = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    try:
        page = await console.queries.requests(filters_of(values), cursor=cursor or None, limit=PAGE_SIZE)
    except ValueError:  # a cursor that was not ours, or was cut short
        raise InvalidRequest("That page link is not valid: start again from the newest requests.") from None
    chosen = {name: value for name, value in values.items() if value}
    context = {
        "rows": page.rows,
        "values": values,
        "choices": await console.queries.distinct_values(),
        "next_url": f"/ui/requests?{urlencode({**chosen, 'cursor': page.next_cursor})}" if page.next_cursor else None,
        "first_url": f"/ui/requests?{urlencode(chosen)}" if cursor else None,
    }
    return console.pages.render(request, "requests.html", context, signed_in=session, current="requests")

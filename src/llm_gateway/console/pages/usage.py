"""Usage for a month: per user, model group and day, on the page and as a CSV download (streamed, ``text/csv``).

Cache hits count as requests but not as tokens or spend: they were served for free, as in every usage report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, StreamingResponse

from llm_gateway.api.usage import parse_month
from llm_gateway.console.deps import ConsoleDep, ConsoleRoute, SignedInDep
from llm_gateway.console.queries import USAGE_LINES, UsageLine
from llm_gateway.pricing import ZERO, format_usd

router = APIRouter(route_class=ConsoleRoute)
CSV_COLUMNS = ("day", "user_id", "model_group", "requests", "prompt_tokens", "completion_tokens", "spend_usd")


@router.get("/ui/usage", response_class=HTMLResponse, include_in_schema=False)
async def usage_page(
    request: Request, console: ConsoleDep, session: SignedInDep, month: str | None = None, user: str | None = None
) -> HTMLResponse:
    chosen = parse_month(month or None)
    lines = await console.queries.usage(chosen, user or None)
    totals = {
        "requests": sum(line.requests for line in lines),
        "prompt_tokens": sum(line.prompt_tokens for line in lines),
        "completion_tokens": sum(line.completion_tokens for line in lines),
        "spend_usd": sum((line.spend_usd for line in lines), ZERO),
    }
    cut = len(lines) >= USAGE_LINES  # the page shows the first lines; the CSV has them all
    context = {"lines": lines, "totals": totals, "month": chosen, "user": user or "", "cut": cut}
    return console.pages.render(request, "usage.html", context, signed_in=session, current="usage")


def _csv_text(rows: Iterable[Iterable[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def _csv(lines: AsyncIterator[UsageLine], chunk: int = 500) -> AsyncIterator[str]:
    """The header, then the lines as the database gives them, ``chunk`` lines a write."""
    yield _csv_text([CSV_COLUMNS])
    rows: list[tuple[object, ...]] = []
    async for line in lines:
        rows.append(
            (
                line.day.isoformat(),
                _cell(line.user_id),
                _cell(line.model_group),
                line.requests,
                line.prompt_tokens,
                line.completion_tokens,
                format_usd(line.spend_usd),
            )
        )
        if len(rows) >= chunk:
            yield _csv_text(rows)
            rows = []
    if rows:
        yield _csv_text(rows)


def _cell(value: str) -> str:
    """A user id or model name that a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@router.get("/ui/usage.csv", include_in_schema=False)
async def usage_csv(
    console: ConsoleDep, session: SignedInDep, month: str | None = None, user: str | None = None
) -> StreamingResponse:
    chosen = parse_month(month or None)
    filename = f"usage-{chosen}.csv"
    return StreamingResponse(
        _csv(console.queries.usage_lines(chosen, user or None)),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )

"""``GET /v1/usage``: the caller's month — budgets, used, spent, reserved, remaining, by model.

``/admin/usage`` shows the same report for any user (see ``admin.py``); both read the usage ledger (the
source of truth) and the limits' live reservations (``reports.py``). US dollar amounts are strings with
six decimals.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request

from llm_gateway.api.deps import CallerDep
from llm_gateway.auth.identity import Identity
from llm_gateway.errors import InvalidRequest
from llm_gateway.reports import LiveReservations, UsageReport, caller_report
from llm_gateway.schemas.openai import ErrorEnvelope
from llm_gateway.store.ledger import UsageLedger

router = APIRouter()
_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")  # [0-9], not \d: \d also matches non-ASCII digits
# Documented in /openapi.json; checked by `parse_month`, whose message is clearer than the framework's.
MonthQuery = Annotated[
    str | None,
    Query(description="YYYY-MM (UTC); this month when absent", json_schema_extra={"pattern": _MONTH.pattern}),
]
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorEnvelope} for status in (400, 401)}


def parse_month(month: str | None) -> str:
    if month is None:
        return datetime.now(UTC).strftime("%Y-%m")
    if not _MONTH.match(month):
        raise InvalidRequest("'month' must look like YYYY-MM.", param="month")
    return month


def ledger_and_limits(request: Request) -> tuple[UsageLedger, LiveReservations]:
    """The app's ledger, and its limits as the reports read them."""
    ledger: UsageLedger = request.app.state.ledger
    return ledger, cast(LiveReservations, request.app.state.limits)


async def identity_report(request: Request, identity: Identity, month: str | None) -> UsageReport:
    return await caller_report(identity, parse_month(month), *ledger_and_limits(request))


@router.get("/v1/usage", response_model=UsageReport, responses=ERRORS, summary="Your usage and spend this month")
async def my_usage(request: Request, identity: CallerDep, month: MonthQuery = None) -> UsageReport:
    return await identity_report(request, identity, month)

"""``GET /v1/usage``: the caller's month — budget, used, reserved, remaining, by model.

``/admin/usage`` shows the same report for any user (see ``admin.py``); both read the usage
ledger (the source of truth) and the limits' live reservations. A key with its own monthly cap
draws on two budgets: the top-level figures are the binding one (the least left), and ``key`` and
``user`` show each.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from llm_gateway.api.deps import CallerDep
from llm_gateway.errors import InvalidRequest
from llm_gateway.limits import Admission
from llm_gateway.schemas.openai import ErrorEnvelope
from llm_gateway.store.ledger import MonthReport, UsageLedger

router = APIRouter()
_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")  # [0-9], not \d: \d also matches non-ASCII digits
# Documented in /openapi.json; checked by `parse_month`, whose message is clearer than the framework's.
MonthQuery = Annotated[
    str | None,
    Query(description="YYYY-MM (UTC); this month when absent", json_schema_extra={"pattern": _MONTH.pattern}),
]
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorEnvelope} for status in (400, 401)}


class ModelUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    requests: int


class BudgetUsage(BaseModel):
    """One budget's month: a key's own cap, or its user's budget."""

    budget_tokens: int
    used_tokens: int
    reserved_tokens: int
    remaining_tokens: int


class UsageReport(BaseModel):
    user_id: str
    month: str
    budget_tokens: int
    used_tokens: int
    reserved_tokens: int
    remaining_tokens: int
    requests: int
    by_model: dict[str, ModelUsage]


class CallerUsageReport(UsageReport):
    """``/v1/usage``: for a key with its own cap, each budget (absent otherwise); the figures above are then
    the binding budget's."""

    key: BudgetUsage | None = None
    user: BudgetUsage | None = None


def parse_month(month: str | None) -> str:
    if month is None:
        return datetime.now(UTC).strftime("%Y-%m")
    if not _MONTH.match(month):
        raise InvalidRequest("'month' must look like YYYY-MM.", param="month")
    return month


def build_report(user_id: str, month: str, budget: int, report: MonthReport, reserved: int) -> UsageReport:
    return UsageReport(
        user_id=user_id,
        month=month,
        budget_tokens=budget,
        used_tokens=report.used_tokens,
        reserved_tokens=reserved,
        remaining_tokens=max(0, budget - report.used_tokens - reserved),
        requests=report.requests,
        by_model={
            name: ModelUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, requests=u.requests)
            for name, u in sorted(report.by_model.items())
        },
    )


async def usage_report(request: Request, user_id: str, budget: int, month: str) -> UsageReport:
    ledger: UsageLedger = request.app.state.ledger
    limits: Admission = request.app.state.limits
    report = await ledger.month_report(user_id, month)
    balance = await limits.balance(user_id, month, budget)
    return build_report(user_id, month, budget, report, balance.reserved)


def _budget(budget: int, used: int, reserved: int) -> BudgetUsage:
    return BudgetUsage(
        budget_tokens=budget,
        used_tokens=used,
        reserved_tokens=reserved,
        remaining_tokens=max(0, budget - used - reserved),
    )


async def key_budget(request: Request, key_id: str, budget: int, month: str) -> BudgetUsage:
    """A key's own cap for the month. Its live reservations are not readable through ``Admission`` yet
    (only the user's are), so ``reserved_tokens`` is 0: between requests, the figures are exact."""
    ledger: UsageLedger = request.app.state.ledger
    return _budget(budget, await ledger.key_month_usage(key_id, month), 0)


@router.get(
    "/v1/usage",
    response_model=CallerUsageReport,
    response_model_exclude_none=True,
    responses=ERRORS,
    summary="Your token usage this month",
)
async def my_usage(request: Request, identity: CallerDep, month: MonthQuery = None) -> CallerUsageReport:
    month = parse_month(month)
    report = CallerUsageReport.model_validate(
        await usage_report(request, identity.user_id, identity.monthly_token_budget, month), from_attributes=True
    )
    if identity.key_id is None or identity.key_token_budget is None:
        return report
    key = await key_budget(request, identity.key_id, identity.key_token_budget, month)
    user = _budget(report.budget_tokens, report.used_tokens, report.reserved_tokens)
    binding = key if key.remaining_tokens < user.remaining_tokens else user
    # The four budget figures are the binding budget's, so that budget - used - reserved = remaining still
    # holds; ``requests`` and ``by_model`` stay the user's month.
    return report.model_copy(
        update={
            "budget_tokens": binding.budget_tokens,
            "used_tokens": binding.used_tokens,
            "reserved_tokens": binding.reserved_tokens,
            "remaining_tokens": binding.remaining_tokens,
            "key": key,
            "user": user,
        }
    )

"""The overview: traffic, tokens, spend and rates over 24 hours (hourly) or 30 days (daily), as charts and as text;
the top users and models; each deployment's state (cooling down or not) and its latency from the ledger.

Chart data leaves as JSON in ``<script type="application/json">`` blocks that ``console.js`` hands to uPlot; the
totals are plain text on the page, so it reads the same without script.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from llm_gateway.console.deps import ConsoleDep, ConsoleRoute, SignedInDep
from llm_gateway.console.queries import Bucket, DeploymentStats
from llm_gateway.pricing import ZERO
from llm_gateway.providers.router import Router

router = APIRouter(route_class=ConsoleRoute)


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    label: str
    span: timedelta
    bucket: Literal["hour", "day"]


PERIODS = {
    "24h": Period("24h", "Last 24 hours", timedelta(hours=24), "hour"),
    "30d": Period("30d", "Last 30 days", timedelta(days=30), "day"),
}


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend_usd: Decimal = ZERO
    cache_hits: int = 0
    errors: int = 0
    fallbacks: int = 0

    @classmethod
    def of(cls, buckets: list[Bucket]) -> Totals:
        return cls(
            requests=sum(b.requests for b in buckets),
            prompt_tokens=sum(b.prompt_tokens for b in buckets),
            completion_tokens=sum(b.completion_tokens for b in buckets),
            spend_usd=sum((b.spend_usd for b in buckets), ZERO),
            cache_hits=sum(b.cache_hits for b in buckets),
            errors=sum(b.errors for b in buckets),
            fallbacks=sum(b.fallbacks for b in buckets),
        )


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    """One deployment as the overview lists it: its chain(s), its state in this process, its ledger figures."""

    provider: str
    model: str
    groups: list[str]
    cooling_seconds: float
    consecutive_failures: int
    stats: DeploymentStats | None


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def charts(buckets: list[Bucket], period: Period) -> list[dict[str, Any]]:
    """What each uPlot chart draws: x in Unix seconds, one list of values per series."""
    x = [int(b.start.timestamp()) for b in buckets]

    def chart(key: str, title: str, unit: str, series: list[tuple[str, str, list[Any]]]) -> dict[str, Any]:
        lines = [{"label": label, "tone": tone, "values": values} for label, tone, values in series]
        data = {"x": x, "step": period.bucket, "unit": unit, "series": lines}
        return {"id": f"chart-{key}-{period.name}", "title": title, "data": data}

    return [
        chart(
            "requests",
            "Requests",
            "",
            [
                ("Requests", "primary", [b.requests for b in buckets]),
                ("Errors", "bad", [b.errors for b in buckets]),
                ("Cache hits", "good", [b.cache_hits for b in buckets]),
                ("Fallbacks", "warn", [b.fallbacks for b in buckets]),
            ],
        ),
        chart(
            "tokens",
            "Tokens",
            "",
            [
                ("Prompt", "primary", [b.prompt_tokens for b in buckets]),
                ("Completion", "alt", [b.completion_tokens for b in buckets]),
            ],
        ),
        chart("spend", "Spend (US dollars)", "$", [("Spend", "primary", [float(b.spend_usd) for b in buckets])]),
        chart(
            "rates",
            "Rates (% of requests)",
            "%",
            [
                ("Cache hit", "good", [_rate(b.cache_hits, b.requests) for b in buckets]),
                ("Error", "bad", [_rate(b.errors, b.requests) for b in buckets]),
                ("Fallback", "warn", [_rate(b.fallbacks, b.requests) for b in buckets]),
            ],
        ),
    ]


def deployment_rows(router: Router | None, stats: list[DeploymentStats]) -> list[DeploymentRow]:
    """Every configured deployment (and any other the ledger saw answer), in chain order."""
    by_key = {f"{s.provider}/{s.model}": s for s in stats}
    groups: dict[str, list[str]] = {}
    where: dict[str, tuple[str, str]] = {}
    for group, chain in (router.groups if router else {}).items():
        for deployment in chain:
            groups.setdefault(deployment.key, []).append(group)
            where[deployment.key] = (deployment.provider, deployment.model)
    for key, stat in by_key.items():
        where.setdefault(key, (stat.provider, stat.model))
    rows = []
    for key, (provider, model) in where.items():
        cooldowns = router.cooldowns if router else None
        rows.append(
            DeploymentRow(
                provider=provider,
                model=model,
                groups=groups.get(key, []),
                cooling_seconds=cooldowns.remaining(key) if cooldowns else 0.0,
                consecutive_failures=cooldowns.failures(key) if cooldowns else 0,
                stats=by_key.get(key),
            )
        )
    return rows


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
@router.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
async def overview(request: Request, console: ConsoleDep, session: SignedInDep, period: str = "24h") -> HTMLResponse:
    chosen = PERIODS.get(period, PERIODS["24h"])
    since = datetime.now(UTC) - chosen.span
    queries = console.queries
    buckets = await queries.series(since, chosen.bucket)
    pipeline = getattr(request.app.state, "pipeline", None)
    context = {
        "period": chosen,
        "periods": PERIODS.values(),
        "totals": Totals.of(buckets),
        "charts": charts(buckets, chosen),
        "top_users": await queries.top_users(since),
        "top_models": await queries.top_models(since),
        "deployments": deployment_rows(pipeline.router if pipeline else None, await queries.deployments(since)),
    }
    return console.pages.render(request, "overview.html", context, signed_in=session, current="overview")

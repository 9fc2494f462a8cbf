"""The full pipeline in the shared shape (issue 20): PostgreSQL, Redis, an API key with limits and budgets, the cache.

Why a section of its own: the bare-proxy rows measure the hop; these measure what a production request
pays on top of it, against the same direct runs. The shape is the one deployments run: keys, users and the
usage ledger in a throw-away PostgreSQL, limits, budgets and the response cache in a throw-away Redis
(bench/servers.py), a key created through the admin API (``POST /admin/keys``) with a rate limit and a
token and a US dollar budget of its own, the user's budgets set too (``PUT /admin/users/bench``), and a
price on every deployment, so each request reserves and settles dollars as well as tokens. Limits are set
so high that they are checked on every request but never refuse one. Before anything is measured the
section checks what the pipeline actually did (401 without the key, a miss then a hit, rate-limit headers,
spend in the ledger) and a row says which is not so.

``SharedShape`` is also what the observability rows run on (bench/observability.py).
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

from harness import Baseline, Bench, Gateway
from loadgen import LoadResult
from report import Row, compare_row, pct, signed_ms
from servers import Servers, Skip

SECTION = "full pipeline"
PIPELINE_RATIO_TARGET = 0.70
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
USER = "bench"
PRICE = {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}  # gpt-4o-mini's, on the fake deployment
LIMITS = {"rate_limit_per_minute": 1_000_000_000, "monthly_token_budget": 10**15, "monthly_budget_usd": "4000000"}
CHAT_BODY = json.dumps(
    {
        "model": "bench",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ],
        "max_tokens": 64,
        "temperature": 0,
    }
).encode()


@dataclass
class SharedShape:
    """Where the shared shape's state lives, and the key every measured request carries."""

    bench: Bench
    redis_url: str
    database_url: str
    key: str = ""

    @classmethod
    def create(cls, bench: Bench, servers: Servers) -> SharedShape:
        return cls(bench, servers.redis(), servers.postgres())

    def start(self, name: str, **env_extra: str) -> Gateway:
        """A gateway of this shape on the gateway core, timed to a 200 on /ready (PostgreSQL migrated)."""
        return self.bench.start_gateway(
            name,
            price=PRICE,
            ready="/ready",
            REDIS_URL=self.redis_url,
            DATABASE_URL=self.database_url,
            ALLOW_ANONYMOUS="false",
            CACHE_TTL_SECONDS="300",
            ADMIN_API_KEY=ADMIN_KEY,
            **env_extra,
        )

    def create_key(self, gateway: Gateway) -> str:
        """The user's limits, then a key with its own, through the admin API."""
        status, body = request(gateway.port, "PUT", f"/admin/users/{USER}", LIMITS, ADMIN_KEY)
        if status != 200:
            raise Skip(f"PUT /admin/users/{USER} answered {status}: {body[:200]!r}")
        status, body = request(
            gateway.port, "POST", "/admin/keys", {"user_id": USER, "name": "bench", **LIMITS}, ADMIN_KEY
        )
        if status != 201:
            raise Skip(f"POST /admin/keys answered {status}: {body[:200]!r}")
        self.key = str(json.loads(body)["key"])
        return self.key


def request(port: int, method: str, path: str, payload: Any, bearer: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() if payload is not None else None
        headers = {"content-type": "application/json"}
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _chat(port: int, key: str) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
        conn.request("POST", "/v1/chat/completions", body=CHAT_BODY, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def check_pipeline(gateway: Gateway, key: str) -> list[str]:
    """What the pipeline actually did, so a row never claims a feature that is not wired."""
    findings = []
    status, _ = _chat(gateway.port, "")
    if status != 401:
        findings.append(f"no key gave {status}, not 401: authentication not enforced")
    status1, first = _chat(gateway.port, key)
    status2, second = _chat(gateway.port, key)
    if status1 != 200 or status2 != 200:
        findings.append(f"requests with the key answered {status1}/{status2}")
    cache = (first.get("x-gateway-cache"), second.get("x-gateway-cache"))
    if cache != ("miss", "hit"):
        findings.append(f"x-gateway-cache on two identical requests: {cache[0]!r}, {cache[1]!r} (want 'miss', 'hit')")
    if "x-ratelimit-remaining-requests" not in second:
        findings.append("no x-ratelimit-* headers: limits not wired")
    return findings


def check_ledger(gateway: Gateway) -> list[str]:
    """After the runs: the user's month in PostgreSQL counts requests and dollars (the prices were applied)."""
    status, body = request(gateway.port, "GET", f"/admin/usage?user_id={USER}", None, ADMIN_KEY)
    if status != 200:
        return [f"GET /admin/usage answered {status}"]
    report = json.loads(body)
    findings = []
    if not report.get("requests"):
        findings.append("the ledger holds no requests")
    if not float(report.get("spend_usd") or 0):
        findings.append("the ledger holds no spend: prices not applied")
    if report.get("budget_usd") is None:
        findings.append("no US dollar budget applied")
    return findings


def run(bench: Bench, shape: SharedShape, gateway: Gateway, baseline: Baseline) -> list[Row]:
    checks = check_pipeline(gateway, shape.key)
    auth = f"auth={shape.key}"
    miss = bench.wrk(gateway.port, 64, "bench", auth, "unique", watch=gateway.pid)
    hit = bench.wrk(gateway.port, 64, "bench", auth, watch=gateway.pid)
    miss_1 = bench.wrk(gateway.port, 1, "bench", auth, "unique", watch=gateway.pid)
    hit_1 = bench.wrk(gateway.port, 1, "bench", auth, watch=gateway.pid)
    checks += check_ledger(gateway)
    bare, bare_1 = baseline.gateway_64, baseline.gateway_1
    caveat = ("; ".join(checks) + ". ") if checks else ""
    ok = not checks
    vs_bare = miss.rps / bare.rps if bare.rps else 0.0
    hit_vs_bare = hit.rps / bare.rps if bare.rps else 0.0
    return [
        compare_row(
            f"{SECTION}, cache miss, 64 conn",
            baseline.direct_64,
            miss,
            target=f">= {PIPELINE_RATIO_TARGET * 100:.0f} % of bare req/s",
            met=vs_bare >= PIPELINE_RATIO_TARGET and miss.errors == 0 and ok,
            note=f"{caveat}{_shape_note()}; vs the bare gateway: {pct(vs_bare)} of its req/s, "
            f"{_cpu_delta(miss, bare)} (bodies all differ: every lookup misses)",
            extra={"vs_bare_gateway": vs_bare, "checks": checks},
        ),
        compare_row(
            f"{SECTION}, cache hit, 64 conn",
            baseline.direct_64,
            hit,
            target=">= bare req/s",
            met=hit_vs_bare >= 1.0 and hit.errors == 0 and ok,
            note=f"vs the bare gateway: {pct(hit_vs_bare)} of its req/s, {_cpu_delta(hit, bare)}",
            extra={"vs_bare_gateway": hit_vs_bare, "checks": checks},
        ),
        compare_row(
            f"{SECTION}, cache miss, 1 conn",
            baseline.direct_1,
            miss_1,
            note=f"vs the bare gateway at 1 conn: {_latency_delta(miss_1, bare_1)}, {_cpu_delta(miss_1, bare_1)}",
            extra={"checks": checks},
        ),
        compare_row(
            f"{SECTION}, cache hit, 1 conn",
            baseline.direct_1,
            hit_1,
            target="p50 <= bare p50",
            met=hit_1.p50_ms <= bare_1.p50_ms and hit_1.errors == 0 and ok,
            note=f"vs the bare gateway at 1 conn: {_latency_delta(hit_1, bare_1)}",
            extra={"checks": checks},
        ),
    ]


def _shape_note() -> str:
    return (
        "PostgreSQL (keys, ledger) and Redis (limits, budgets, cache) on the client core, a key made by "
        "POST /admin/keys with its own rate limit, token and USD budgets, the user's too, prices on the deployment"
    )


def _cpu_delta(run: LoadResult, bare: LoadResult) -> str:
    if run.cpu_us_per_request is None or bare.cpu_us_per_request is None:
        return "CPU per request unknown"
    return (
        f"{run.cpu_us_per_request:,.0f} vs {bare.cpu_us_per_request:,.0f} us of CPU per request "
        f"({run.cpu_us_per_request - bare.cpu_us_per_request:+,.0f})"
    )


def _latency_delta(run: LoadResult, bare: LoadResult) -> str:
    return f"p50 {signed_ms(run.p50_ms - bare.p50_ms)} ms, p99 {signed_ms(run.p99_ms - bare.p99_ms)} ms"

"""``--full-pipeline``: an API key, rate limit and budget on Redis, the response cache (miss, then hit), OTel off.

Why a section of its own: the bare-proxy rows measure the hop; these measure what a
production request pays on top of it, against the same direct runs. It needs pieces that
other work provides (``llm-gateway keys create``, Redis-backed limits and cache): when one
is missing, the section reports ``skipped: <why>`` instead of failing the run.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import time
from urllib.parse import urlsplit

from harness import Baseline, Bench, Gateway
from processes import free_port
from report import Row, compare_row, pct, skipped_row

SECTION = "full pipeline"
PIPELINE_RATIO_TARGET = 0.70
KEY_PATTERNS = (re.compile(r"\b(sk-[A-Za-z0-9_\-]{16,})\b"), re.compile(r"^\s*key\s*[:=]\s*(\S+)", re.I | re.M))
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


class Skip(Exception):
    """The section cannot run here; the message says why."""


def run(bench: Bench, baseline: Baseline) -> list[Row]:
    try:
        redis_url = redis(bench)
        key = create_key(bench, redis_url)
        gateway = bench.start_gateway(
            "gateway-pipeline", REDIS_URL=redis_url, ALLOW_ANONYMOUS="false", CACHE_TTL_SECONDS="300"
        )
    except Skip as exc:
        return [skipped_row(SECTION, str(exc))]
    try:
        checks = check_pipeline(gateway, key)
        return measure(bench, gateway, key, baseline, checks)
    finally:
        bench.procs.stop(gateway.child)


def redis(bench: Bench) -> str:
    """REDIS_URL from the environment (loopback only), else a throw-away redis-server on the client core."""
    url = os.environ.get("REDIS_URL")
    if url:
        host = urlsplit(url).hostname or ""
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise Skip(f"REDIS_URL points at {host!r}; the benchmark only sends traffic to loopback")
        return url
    server = shutil.which("redis-server")
    if server is None:
        raise Skip("no REDIS_URL and no redis-server on PATH (apt-get install redis-server)")
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    child = bench.procs.start("redis", bench.on_client_core(argv))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise Skip(f"redis-server exited: {child.log_tail(3)}")
        if _redis_ping(port):
            return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.02)
    raise Skip("redis-server did not answer PING within 10 s")


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def create_key(bench: Bench, redis_url: str) -> str:
    """``llm-gateway keys create --user bench`` against the bench database; the key from its output."""
    proc = bench.cli("keys", "create", "--user", "bench", REDIS_URL=redis_url)
    output = proc.stdout + "\n" + proc.stderr
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise Skip(f"`llm-gateway keys create --user bench` failed (exit {proc.returncode}): {last[0][:200]}")
    try:
        data = json.loads(proc.stdout)
        if isinstance(data, dict) and isinstance(data.get("key"), str):
            return data["key"]
    except ValueError:
        pass
    for pattern in KEY_PATTERNS:
        match = pattern.search(output)
        if match:
            return match.group(1)
    raise Skip(f"no key found in the output of `keys create`: {output.strip()[:200]!r}")


def _post(port: int, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST", "/v1/chat/completions", body=CHAT_BODY, headers={"content-type": "application/json", **headers}
        )
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def check_pipeline(gateway: Gateway, key: str) -> list[str]:
    """What the pipeline actually did, so a row never claims a feature that is not wired yet."""
    findings = []
    status, _ = _post(gateway.port, {})
    if status != 401:
        findings.append(f"no key gave {status}, not 401: authentication not enforced")
    auth = {"authorization": f"Bearer {key}"}
    status1, first = _post(gateway.port, auth)
    status2, second = _post(gateway.port, auth)
    if status1 != 200 or status2 != 200:
        raise_for = f"requests with the key answered {status1}/{status2}"
        findings.append(raise_for)
    cache = (first.get("x-gateway-cache"), second.get("x-gateway-cache"))
    if cache != ("miss", "hit"):
        findings.append(f"x-gateway-cache on two identical requests: {cache[0]!r}, {cache[1]!r} (want 'miss', 'hit')")
    if "x-ratelimit-remaining-requests" not in second:
        findings.append("no x-ratelimit-* headers: limits not wired")
    return findings


def measure(bench: Bench, gateway: Gateway, key: str, baseline: Baseline, checks: list[str]) -> list[Row]:
    auth = f"auth={key}"
    miss = bench.wrk(gateway.port, 64, "bench", auth, "unique", watch=gateway.pid)
    hit = bench.wrk(gateway.port, 64, "bench", auth, watch=gateway.pid)
    hit_1 = bench.wrk(gateway.port, 1, "bench", auth, watch=gateway.pid)
    vs_bare = miss.rps / baseline.gateway_64.rps if baseline.gateway_64.rps else 0.0
    caveat = ("; ".join(checks) + ". ") if checks else ""
    return [
        compare_row(
            f"{SECTION}, cache miss, 64 conn",
            baseline.direct_64,
            miss,
            target=f">= {PIPELINE_RATIO_TARGET * 100:.0f} % of bare gateway",
            met=vs_bare >= PIPELINE_RATIO_TARGET and miss.errors == 0 and not checks,
            note=f"{caveat}vs the bare gateway: {pct(vs_bare)} (bodies all differ: every lookup misses)",
            extra={"vs_bare_gateway": vs_bare, "checks": checks},
        ),
        compare_row(f"{SECTION}, cache hit, 64 conn", baseline.direct_64, hit, extra={"checks": checks}),
        compare_row(
            f"{SECTION}, cache hit, 1 conn",
            baseline.direct_1,
            hit_1,
            target="p50 < direct p50",
            met=hit_1.p50_ms < baseline.direct_1.p50_ms and hit_1.errors == 0 and not checks,
            extra={"checks": checks},
        ),
    ]

"""No secret leaves the gateway: a run through every feature, then a grep of everything it emitted.

``llm-gateway serve`` runs as users run it (a process, LOG_LEVEL=DEBUG, LOG_FORMAT=json, its output
captured to a file) against fake upstreams, a fake Helicone and an OTLP receiver. It is driven through
API keys and a JWT, the admin API, plain and streamed chat, fallback after upstream 401s that echo the
provider's key, an upstream error event that echoes it mid-stream, a cache hit, a rate-limit refusal,
revocation and ``/metrics``. Then every response (bodies and headers), the log file, ``/metrics``, the
Helicone payloads and the received spans are searched for every secret: the provider keys, the
Helicone key, the API keys created, the JWT, ``JWT_SECRET`` and ``ADMIN_API_KEY``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.fakes import Fail, FakeProvider, StreamError
from tests.fakes.collectors import FakeHelicone, FakeOtlpHttp, wait_for
from tests.services import free_port

pytestmark = pytest.mark.integration

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
HELLO = [{"role": "user", "content": "Say hello."}]


def secret(prefix: str) -> str:
    # Shapes the log redactor does not recognise: only the gateway's own care keeps them out.
    return f"{prefix}{secrets.token_hex(20)}"


@dataclass
class Run:
    """The gateway process and everything it said."""

    url: str
    log: Path
    process: subprocess.Popen[bytes]
    secrets: dict[str, str]
    transcript: list[tuple[str, str]] = field(default_factory=list)  # (what, text said)
    allowed: dict[int, str] = field(default_factory=dict)  # transcript index -> the one secret it may show

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it: the gateway flushes its exporters and queues on the way out."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def record(self, what: str, response: httpx.Response, text: str | None = None) -> httpx.Response:
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.transcript.append(
            (what, f"{response.status_code}\n{headers}\n\n{response.text if text is None else text}")
        )
        return response


@pytest.fixture
def providers() -> Iterator[dict[str, FakeProvider]]:
    fakes = {
        kind: FakeProvider(kind, api_key=secret(f"{kind}-provider-key-"))  # type: ignore[arg-type]
        for kind in ("openai", "anthropic", "groq")
    }
    for fake in fakes.values():
        fake.start()
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            fake.stop()


@pytest.fixture
def helicone() -> Iterator[FakeHelicone]:
    with FakeHelicone(api_key=secret("helicone-key-")) as fake:
        yield fake


@pytest.fixture
def otlp() -> Iterator[FakeOtlpHttp]:
    with FakeOtlpHttp() as receiver:
        yield receiver


def gateway_env(tmp_path: Path, port: int, providers: dict[str, FakeProvider], **extra: str) -> dict[str, str]:
    inherited = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV", "PYTHONPATH")
    env = {name: os.environ[name] for name in inherited if name in os.environ}
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{tmp_path}/gateway.db",
            "GATEWAY_CONFIG": "",
            "LOG_LEVEL": "DEBUG",
            "LOG_FORMAT": "json",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "250",
            "OTEL_SERVICE_NAME": "gateway-secrets-test",
            **extra,
        }
    )
    for fake in providers.values():
        env.update(fake.env)
    return env


@pytest.fixture
def run(
    tmp_path: Path, providers: dict[str, FakeProvider], helicone: FakeHelicone, otlp: FakeOtlpHttp
) -> Iterator[Run]:
    port = free_port()
    known = {f"{kind.upper()}_API_KEY": fake.api_key for kind, fake in providers.items()}
    known |= {
        "HELICONE_API_KEY": helicone.api_key,
        "ADMIN_API_KEY": secret("admin-key-"),
        "JWT_SECRET": secret("jwt-secret-"),
    }
    env = gateway_env(
        tmp_path,
        port,
        providers,
        ADMIN_API_KEY=known["ADMIN_API_KEY"],
        JWT_SECRET=known["JWT_SECRET"],
        HELICONE_API_KEY=known["HELICONE_API_KEY"],
        HELICONE_BASE_URL=helicone.url,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url,
    )
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "serve"], env=env, cwd=tmp_path, stdout=output, stderr=output
        )
    served = Run(f"http://127.0.0.1:{port}", log, process, known)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _healthy(served.url):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the gateway did not become healthy"
            time.sleep(0.1)
        yield served
    finally:
        served.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def exercise_admin(run: Run, client: httpx.Client) -> dict[str, str]:
    """Create, list and revoke keys, set and read a user, read usage; returns the keys created."""
    admin = bearer(run.secrets["ADMIN_API_KEY"])
    keys: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    for name, fields in {
        "alice": {"user_id": "alice", "rate_limit_per_minute": 1000},
        "bob": {"user_id": "bob", "rate_limit_per_minute": 1},
        "carol": {"user_id": "carol", "name": "to be revoked"},
    }.items():
        response = run.record("POST /admin/keys", client.post("/admin/keys", headers=admin, json=fields))
        assert response.status_code == 201, response.text
        keys[name], key_ids[name] = response.json()["key"], response.json()["id"]
        run.allowed[len(run.transcript) - 1] = keys[name]
    for path in ("/admin/keys", "/admin/keys?user_id=alice", "/admin/users/alice", "/admin/usage?user_id=alice"):
        if path == "/admin/users/alice":
            put = client.put(path, headers=admin, json={"monthly_token_budget": 900_000})
            assert run.record(f"PUT {path}", put).status_code == 200
        assert run.record(f"GET {path}", client.get(path, headers=admin)).status_code == 200
    revoked = client.delete(f"/admin/keys/{key_ids['carol']}", headers=admin)
    assert run.record("DELETE /admin/keys", revoked).status_code == 200
    wrong = client.get("/admin/keys", headers=bearer(run.secrets["JWT_SECRET"]))  # a secret, just not this one
    assert run.record("GET /admin/keys (wrong key)", wrong).status_code == 401
    return keys


def chat(run: Run, client: httpx.Client, what: str, token: str, **body: Any) -> httpx.Response:
    payload = {"model": "gpt-4o-mini", "messages": HELLO, **body}
    if not payload.get("stream"):
        return run.record(what, client.post("/v1/chat/completions", headers=bearer(token), json=payload))
    with client.stream("POST", "/v1/chat/completions", headers=bearer(token), json=payload) as response:
        text = response.read().decode()
    return run.record(what, response, text)


def exercise_chat(run: Run, client: httpx.Client, keys: dict[str, str], providers: dict[str, FakeProvider]) -> None:
    alice, token = keys["alice"], run.secrets["JWT"]
    first = chat(run, client, "chat plain", alice)
    assert first.status_code == 200 and first.headers["x-gateway-cache"] == "miss"
    assert chat(run, client, "chat cached", alice).headers["x-gateway-cache"] == "hit"
    streamed = chat(run, client, "chat streamed", alice, stream=True, stream_options={"include_usage": True})
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    assert chat(run, client, "chat with a JWT", token, messages=[{"role": "user", "content": "jwt"}]).status_code == 200
    models = client.get("/v1/models", headers=bearer(token))
    assert run.record("GET /v1/models (JWT)", models).status_code == 200
    assert run.record("GET /v1/usage", client.get("/v1/usage", headers=bearer(alice))).status_code == 200

    # Upstream 401s that echo our provider keys: fallback, and the keys stay inside.
    openai, anthropic, groq = providers["openai"], providers["anthropic"], providers["groq"]
    openai.push(Fail(401, f"Incorrect API key provided: {openai.api_key}."))
    anthropic.push(Fail(401, f"invalid x-api-key {anthropic.api_key}"))
    fallback = chat(run, client, "chat after 401s", alice, messages=[{"role": "user", "content": "fall back"}])
    assert fallback.status_code == 200 and fallback.headers["x-gateway-provider"] == "groq", fallback.text
    openai.push(Fail(401, f"key {openai.api_key}"))
    anthropic.push(Fail(401, f"key {anthropic.api_key}"))
    groq.push(Fail(401, f"key {groq.api_key}"))
    failed = chat(run, client, "chat, every upstream 401", alice, messages=[{"role": "user", "content": "all fail"}])
    assert failed.status_code == 502, failed.text
    openai.push(Fail(400, f"This request ({openai.api_key}) is invalid."))
    rejected = chat(run, client, "chat, upstream 400", alice, messages=[{"role": "user", "content": "bad"}])
    assert rejected.status_code == 400, rejected.text
    # An error event after the first bytes reached the caller: relayed as an error event, key and all?
    openai.push(StreamError(after_chunks=2, message=f"stream broke; key={openai.api_key}"))
    anthropic.push(StreamError(after_chunks=2, message=f"overloaded {anthropic.api_key}"))
    for model in ("gpt-4o-mini", "claude-3-5-haiku-latest"):
        fresh = [{"role": "user", "content": f"not cached: {model}"}]
        cut = chat(run, client, f"stream error {model}", alice, model=model, messages=fresh, stream=True)
        assert cut.status_code == 200 and "[DONE]" not in cut.text and '"error"' in cut.text, cut.text

    bob = keys["bob"]
    assert chat(run, client, "rate limited (1st)", bob).status_code == 200
    limited = chat(run, client, "rate limited (2nd)", bob, messages=[{"role": "user", "content": "again"}])
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert chat(run, client, "revoked key", keys["carol"]).status_code == 401
    bad_jwt = run.secrets["JWT"][:-4] + "AAAA"
    assert chat(run, client, "tampered JWT", bad_jwt).status_code == 401


def leaks(text: str, secrets_: dict[str, str], allowed: str | None = None) -> list[str]:
    """Names of the secrets found in ``text``: whole, or their last 16 characters (a cut or masked copy)."""
    found = []
    for name, value in secrets_.items():
        if value == allowed:
            continue
        if value in text or value[-16:] in text:
            found.append(name)
    return found


def test_no_secret_in_responses_logs_metrics_helicone_or_spans(
    run: Run, providers: dict[str, FakeProvider], helicone: FakeHelicone, otlp: FakeOtlpHttp
) -> None:
    now = int(time.time())
    run.secrets["JWT"] = jwt.encode({"sub": "jwt-user", "exp": now + 600}, run.secrets["JWT_SECRET"], "HS256")
    with httpx.Client(base_url=run.url, timeout=30) as client:
        keys = exercise_admin(run, client)
        run.secrets |= {f"API key of {name}": key for name, key in keys.items()}
        exercise_chat(run, client, keys, providers)
        metrics = run.record("GET /metrics", client.get("/metrics")).text
    assert "llm_gateway" in metrics or "gateway" in metrics

    # Helicone logs and spans leave in the background; stopping the gateway flushes what is left.
    assert wait_for(lambda: len(helicone.logs) >= 5, timeout=15), len(helicone.logs)
    assert wait_for(lambda: any(span.kind == 3 for span in otlp.spans), timeout=15), "no client span arrived"
    run.stop()
    log_text = run.log.read_text(errors="replace")
    assert '"logger":"llm_gateway.request"' in log_text, log_text[-2000:]
    run_secrets = dict(run.secrets)

    problems: list[str] = []
    for index, (what, text) in enumerate(run.transcript):
        for name in leaks(text, run_secrets, run.allowed.get(index)):
            problems.append(f"response to {what!r} shows {name}")
    for item in helicone.logs:
        helicone_secrets = {k: v for k, v in run_secrets.items() if k != "HELICONE_API_KEY"}
        headers = {k: v for k, v in item.headers.items() if k != "authorization"}
        for name in leaks(item.raw.decode() + repr(headers), run_secrets) + leaks(repr(item.headers), helicone_secrets):
            problems.append(f"a Helicone log shows {name}")
    for span in otlp.spans:
        for name in leaks(repr((span.name, span.attributes, span.resource)), run_secrets):
            problems.append(f"span {span.name!r} shows {name}")
    for name in leaks(metrics, run_secrets):
        problems.append(f"/metrics shows {name}")
    for line in log_text.splitlines():
        for name in leaks(line, run_secrets):
            problems.append(f"log line shows {name}: {line[:300]}")
    assert not problems, "\n".join(problems)

"""The gateway's own logs, as an operator collects them: ``llm-gateway serve`` in a subprocess with
``LOG_FORMAT=json`` and ``LOG_LEVEL=DEBUG``, its stderr captured. Every line is JSON; there is one request
line per request with the fields an operator needs; no credential, prompt or answer appears anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from tests.fakes import Fail, FakeProvider
from tests.fakes.collectors import FakeHelicone, wait_for
from tests.identity_support import ADMIN_API_KEY, create_key
from tests.services import free_port

pytestmark = pytest.mark.integration

START_TIMEOUT_SECONDS = 60.0  # a busy machine can take long to import and migrate
JWT_SECRET = "jwt-secret-for-the-log-test-0123456789abcdef"
PROMPT = "My prompt is private: log-e2e-prompt-c0ffee."
MESSAGES = [{"role": "user", "content": PROMPT}]
NO_STORE = {"cache-control": "no-store"}
REQUEST_LOGGER = "llm_gateway.request"


@dataclass
class Served:
    url: str
    stderr: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> list[dict[str, Any]]:
        """Stop the gateway as a service manager does (SIGTERM) and parse every line it wrote."""
        self.process.terminate()
        self.process.wait(timeout=20)
        text = self.stderr.read_text()
        lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        assert all(isinstance(line, dict) and {"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
        return lines


@pytest.fixture
def helicone() -> Iterator[FakeHelicone]:
    with FakeHelicone() as fake:
        yield fake


@pytest.fixture
def served(tmp_path: Path, fakes: dict[str, FakeProvider], helicone: FakeHelicone) -> Iterator[Served]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "REDIS_", "PROMETHEUS_"))}
    env = {k: v for k, v in env.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "GATEWAY_CONFIG": "",
            "DATABASE_URL": f"sqlite:///{tmp_path}/gateway.db",
            "ADMIN_API_KEY": ADMIN_API_KEY,
            "JWT_SECRET": JWT_SECRET,
            "HELICONE_API_KEY": helicone.api_key,
            "HELICONE_BASE_URL": helicone.url,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
        }
    )
    for fake in fakes.values():
        env.update(fake.env)
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "serve"], env=env, cwd=tmp_path, stdout=output, stderr=output
        )
    served = Served(f"http://127.0.0.1:{port}", stderr, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.get(f"{served.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "the gateway did not become healthy"
            time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_one_json_line_per_request_and_no_secret_or_prompt_anywhere(
    served: Served, fakes: dict[str, FakeProvider], helicone: FakeHelicone
) -> None:
    api_key = create_key(served.url, "lisa")
    token = jwt.encode({"sub": "jwt-user-9", "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    with httpx.Client(base_url=served.url, timeout=20) as http:

        def chat(request_id: str, credential: dict[str, str], **extra: Any) -> httpx.Response:
            headers = {"x-request-id": request_id, **credential, **extra.pop("headers", {})}
            return http.post("/v1/chat/completions", json={**body, **extra}, headers=headers)

        bearer = {"authorization": f"Bearer {api_key}"}
        assert chat("log-plain", bearer).status_code == 200
        assert chat("log-hit", bearer).headers["x-gateway-cache"] == "hit"
        fakes["openai"].push(Fail(500))
        assert chat("log-fallback", {"x-api-key": api_key}, headers=NO_STORE).status_code == 200
        for fake in fakes.values():
            fake.push(Fail(503))
        assert chat("log-fail", bearer, headers=NO_STORE).status_code == 502
        wrong_key = "sk-gw-nosuchkey-0123456789abcdef0123456789"
        assert chat("log-401", {"authorization": f"Bearer {wrong_key}"}).status_code == 401
        stream = {**body, "stream": True}
        jwt_headers = {"authorization": f"Bearer {token}", "x-request-id": "log-stream"}
        with http.stream("POST", "/v1/chat/completions", json=stream, headers=jwt_headers) as streamed:
            assert streamed.read().endswith(b"data: [DONE]\n\n")
    assert wait_for(lambda: len(helicone.logs) == 4, 10)  # Helicone saw the prompt; the logs must not
    lines = served.stop()

    text = served.stderr.read_text()
    secrets = [api_key, api_key.rsplit("-", 1)[-1], token, JWT_SECRET, ADMIN_API_KEY, helicone.api_key, wrong_key]
    secrets += [fake.api_key for fake in fakes.values()]
    for secret in secrets:
        assert secret not in text
    assert "log-e2e-prompt" not in text and "Hello from" not in text
    assert any(line["level"] == "debug" for line in lines)  # DEBUG really was on
    assert not any(line["logger"] == "uvicorn.access" for line in lines)  # the request line is the only one

    requests = [line for line in lines if line["logger"] == REQUEST_LOGGER]
    by_id = {line["request_id"]: line for line in requests}
    assert len(requests) == len(by_id) == 6
    for line in requests:
        assert line["level"] == "info" and line["msg"] == "request"
        assert line["route"] == "/v1/chat/completions" and line["total_ms"] > 0
        assert line["model"] == ("unknown" if line["request_id"] == "log-401" else "gpt-4o-mini")

    refused = by_id["log-401"]
    assert (refused["status"], refused["error"], refused["user_id"], refused["attempts"]) == (
        401,
        "invalid_api_key",
        None,
        [],
    )

    plain = by_id["log-plain"]
    assert plain["user_id"] == "lisa" and plain["key_id"]
    assert (plain["provider"], plain["status"], plain["cache"], plain["stream"]) == ("openai", 200, "miss", False)
    assert (plain["prompt_tokens"], plain["completion_tokens"]) == (11, 7)
    assert [(a["provider"], a["status"], a["error"]) for a in plain["attempts"]] == [("openai", 200, None)]
    assert 0 < plain["upstream_ms"] <= plain["total_ms"]

    hit = by_id["log-hit"]
    assert (hit["cache"], hit["provider"], hit["attempts"], hit["status"]) == ("hit", None, [], 200)

    fallback = by_id["log-fallback"]
    assert fallback["provider"] == "anthropic" and fallback["cache"] is None
    assert [(a["provider"], a["error"]) for a in fallback["attempts"]] == [("openai", "http_500"), ("anthropic", None)]

    failed = by_id["log-fail"]
    assert (failed["status"], failed["error"], failed["provider"]) == (502, "all_providers_failed", None)
    assert [a["error"] for a in failed["attempts"]] == ["http_503"] * 3

    streamed_line = by_id["log-stream"]
    assert streamed_line["user_id"] == "jwt-user-9" and streamed_line["stream"] is True
    assert (streamed_line["prompt_tokens"], streamed_line["completion_tokens"]) == (11, 7)
    assert 0 < streamed_line["ttft_ms"] <= streamed_line["total_ms"]

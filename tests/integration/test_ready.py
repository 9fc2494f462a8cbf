"""``GET /ready`` with Redis coming and going, as documented in ``/openapi.json``; and a newcomer's gateway, with no
provider key at all, telling what to set (DESIGN.md, Operations and Fallback)."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import StartGateway
from tests.identity_support import sqlite_url
from tests.services import RedisServer

pytestmark = pytest.mark.integration

FLIP_TIMEOUT_SECONDS = 10.0
KEYS_TO_SET = "set OPENAI_API_KEY, ANTHROPIC_API_KEY or GROQ_API_KEY"


def ready(base_url: str) -> tuple[int, Any]:
    response = httpx.get(f"{base_url}/ready", timeout=5)
    return response.status_code, response.json()


def wait_for_ready(base_url: str, status: int) -> Any:
    deadline = time.monotonic() + FLIP_TIMEOUT_SECONDS
    while (answer := ready(base_url))[0] != status:
        assert time.monotonic() < deadline, f"/ready stayed {answer}"
        time.sleep(0.1)
    return answer[1]


def test_ready_follows_redis_and_names_no_address(
    start_gateway: StartGateway, fake_env: dict[str, str], throwaway_redis: RedisServer
) -> None:
    env = {**fake_env, "REDIS_URL": throwaway_redis.url, "REDIS_PREFIX": f"t-{uuid.uuid4().hex[:8]}:"}
    gateway = start_gateway(env)
    assert ready(gateway.base_url) == (200, {"status": "ready"})

    throwaway_redis.stop()
    body = wait_for_ready(gateway.base_url, 503)
    assert body["status"] == "unavailable" and list(body["checks"]) == ["redis"], body
    assert str(throwaway_redis.port) not in body["checks"]["redis"] and "redis://" not in body["checks"]["redis"]
    assert httpx.get(f"{gateway.base_url}/health", timeout=5).json() == {"status": "ok"}  # liveness unmoved

    throwaway_redis.start()
    assert wait_for_ready(gateway.base_url, 200) == {"status": "ready"}


def test_ready_is_documented_in_openapi(start_gateway: StartGateway, fake_env: dict[str, str]) -> None:
    gateway = start_gateway(fake_env)
    schema = httpx.get(f"{gateway.base_url}/openapi.json", timeout=5).json()
    responses = schema["paths"]["/ready"]["get"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Ready"}
    assert responses["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Unavailable"}
    unavailable = schema["components"]["schemas"]["Unavailable"]
    assert unavailable["required"] == ["checks"] and unavailable["properties"]["status"]["const"] == "unavailable"


def test_without_any_provider_key_a_built_in_group_is_503_naming_the_keys(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llm_gateway.app")
    gateway = start_gateway({"GATEWAY_CONFIG": "", "DATABASE_URL": sqlite_url(tmp_path), "LOG_LEVEL": "WARNING"})
    hints = [r.getMessage() for r in caplog.records if "no LLM provider has an API key" in r.getMessage()]
    assert hints == [
        "no LLM provider has an API key: set OPENAI_API_KEY, ANTHROPIC_API_KEY, GROQ_API_KEY, GEMINI_API_KEY or "
        "GATEWAY_CONFIG (a YAML file of providers and model groups); until then every model answers 503 "
        "no_provider_configured"
    ]

    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=5)
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": {
            "message": f"No provider of the model 'gpt-4o-mini' has an API key: {KEYS_TO_SET}.",
            "type": "api_error",
            "param": "model",
            "code": "no_provider_configured",
        }
    }
    messages = httpx.post(
        f"{gateway.base_url}/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={**body, "model": "gpt-4o", "max_tokens": 8},
        timeout=5,
    )
    assert messages.status_code == 503, messages.text
    assert messages.json()["error"] == {
        "type": "api_error",
        "message": f"No provider of the model 'gpt-4o' has an API key: {KEYS_TO_SET}.",
    }
    unknown = httpx.post(f"{gateway.base_url}/v1/chat/completions", json={**body, "model": "no-such"}, timeout=5)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"

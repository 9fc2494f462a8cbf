"""A bug in the gateway (an exception that is not a GatewayError) mid-request: the caller gets a 500 in
OpenAI's envelope with nothing of the exception in it, the budget reservation is released at once (not
held until it expires), and the request is in the ledger and the log with status 500.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from llm_gateway.pipeline import Pipeline
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import chat_body, ledger_rows, set_user, sqlite_path, wait_for

pytestmark = pytest.mark.integration

SECRET_IN_BUG = "sk-internal-state-that-must-not-leak"


def break_provider(gateway: GatewayServer, name: str) -> None:
    """Make one provider's client raise what no error mapping knows (the gateway serves in this process)."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"bug with {SECRET_IN_BUG}")

    pipeline: Pipeline = gateway.app.state.pipeline
    provider = pipeline.router._providers[name]
    provider.chat = broken  # type: ignore[method-assign]
    provider.chat_stream = broken  # type: ignore[method-assign]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_unexpected_exception_is_a_clean_500_that_releases_the_reservation(
    gateway: GatewayServer, fake_env: dict[str, str], stream: bool
) -> None:
    set_user(gateway.base_url, "bob", monthly_token_budget=50_000)
    key = create_key(gateway.base_url, "bob")
    break_provider(gateway, "openai")

    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers={"x-api-key": key},
        json=chat_body(max_tokens=1000, stream=stream),
        timeout=10,
    )

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": "The gateway failed to handle the request.",
            "type": "api_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert response.headers["x-request-id"]
    usage = httpx.get(f"{gateway.base_url}/v1/usage", headers={"x-api-key": key}).json()
    assert usage["reserved_tokens"] == 0 and usage["used_tokens"] == 0  # released, not held for its TTL
    rows = wait_for(lambda: ledger_rows(sqlite_path(fake_env["DATABASE_URL"]), user_id="bob"), what="ledger row")
    assert [(row["status"], row["prompt_tokens"], row["completion_tokens"]) for row in rows] == [(500, 0, 0)]
    assert SECRET_IN_BUG not in response.text
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert (
        'llm_gateway_requests_total{model="gpt-4o-mini",provider="none",route="/v1/chat/completions",status="500"} 1.0'
        in (metrics)
    ), [line for line in metrics.splitlines() if line.startswith("llm_gateway_requests_total")]

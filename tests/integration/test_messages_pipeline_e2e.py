"""``POST /v1/messages`` runs the one pipeline: budgets charge Anthropic's usage, the cache answers (and replays a
stream) apart from chat's entries, the ledger and ``/metrics`` name the surface; and Claude Code's own requests,
replayed as it sends them, through a native deployment and a translated one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.cache_support import stored_entries, wait_for_entries
from tests.conftest import StartGateway
from tests.fakes import FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import ledger_rows, set_user, sqlite_path, wait_for
from tests.messages_support import CLAUDE, MakeAnthropic, sse_events, user_turn, write_groups
from tests.sdk_support import MakeSdk, requests_by_route

pytestmark = pytest.mark.integration


def usage_after(gateway: GatewayServer, key: str, requests: int) -> dict[str, Any]:
    """The caller's ``/v1/usage`` once the ledger (written in the background) holds ``requests`` requests."""

    def probe() -> dict[str, Any] | None:
        report: dict[str, Any] = httpx.get(f"{gateway.base_url}/v1/usage", headers={"x-api-key": key}).json()
        return report if report["requests"] >= requests else None

    report = wait_for(probe, what=f"{requests} requests in the ledger")
    assert report["requests"] == requests, report
    return report


# -- budgets -------------------------------------------------------------------------------------------------


def test_the_budget_is_charged_anthropics_whole_usage_and_refuses_what_it_cannot_hold(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    set_user(gateway.base_url, "bea", monthly_token_budget=5000)
    key = create_key(gateway.base_url, "bea")
    fakes["anthropic"].push(
        Reply("Cached.", prompt_tokens=30, cache_creation_tokens=100, cache_read_tokens=900, completion_tokens=20)
    )
    client = claude(gateway, key)
    message = client.messages.create(**user_turn())
    assert message.usage.cache_read_input_tokens == 900

    report = usage_after(gateway, key, 1)
    assert report["used_tokens"] == 30 + 100 + 900 + 20
    assert report["by_model"][CLAUDE]["completion_tokens"] == 20

    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**user_turn("Long answer, please.", max_tokens=6000))
    body = caught.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "budget" in body["error"]["message"].lower() or "quota" in body["error"]["message"].lower()
    assert caught.value.response.headers["x-ratelimit-remaining-tokens"] == str(5000 - 1050)
    assert "retry-after" in caught.value.response.headers
    assert len(fakes["anthropic"].chat_requests) == 1


# -- the cache -----------------------------------------------------------------------------------------------


def test_a_repeated_message_is_a_cache_hit_and_its_stream_replays_as_anthropic_events(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic, sdk: MakeSdk
) -> None:
    key = create_key(gateway.base_url, "cam")
    fakes["anthropic"].push(Reply("Cache me.", thinking="Hmm.", prompt_tokens=12, completion_tokens=4))
    client = claude(gateway, key)
    request = user_turn(thinking={"type": "enabled", "budget_tokens": 1024})
    first = client.messages.with_raw_response.create(**request)
    assert first.headers["x-gateway-cache"] == "miss"
    wait_for_entries(gateway, 1)
    again = client.messages.with_raw_response.create(**request)
    assert again.headers["x-gateway-cache"] == "hit"
    assert again.parse().content == first.parse().content and again.parse().id == first.parse().id

    with client.messages.stream(**request) as stream:
        replayed = stream.get_final_message()
        assert stream.response.headers["x-gateway-cache"] == "hit"
    assert replayed.model_dump() == first.parse().model_dump()
    assert len(fakes["anthropic"].chat_requests) == 1
    assert usage_after(gateway, key, 3)["used_tokens"] == 12 + 4  # the hits charged nothing

    # The same question through chat is its own entry: neither surface answers from the other's.
    chat = sdk(gateway).chat.completions.with_raw_response.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert chat.headers["x-gateway-cache"] == "miss"
    assert len(fakes["anthropic"].chat_requests) == 2
    wait_for_entries(gateway, 2)
    fakes["anthropic"].push(Reply("Fresh."))
    fresh = client.messages.create(**user_turn())  # no thinking: another request, after chat's entry was made
    assert fresh.content[0].type == "text" and fresh.content[0].text == "Fresh."
    assert stored_entries(gateway) >= 2


# -- the ledger and /metrics ---------------------------------------------------------------------------------


def test_the_ledger_and_metrics_name_the_messages_surface(
    gateway: GatewayServer, fake_env: dict[str, str], claude: MakeAnthropic, sdk: MakeSdk
) -> None:
    key = create_key(gateway.base_url, "lee")
    claude(gateway, key).messages.create(**user_turn("Ledger me."))
    sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "And me."}])
    database = sqlite_path(fake_env["DATABASE_URL"])
    wait_for(lambda: len(ledger_rows(database)) == 2, what="two ledger rows")
    (messages,) = ledger_rows(database, endpoint="messages")
    assert (messages["user_id"], messages["model_group"], messages["provider"]) == ("lee", CLAUDE, "anthropic")
    assert (messages["prompt_tokens"], messages["completion_tokens"], messages["status"]) == (11, 7, 200)
    (chat,) = ledger_rows(database, endpoint="chat")
    assert chat["model_group"] == "gpt-4o-mini"

    routes = requests_by_route(gateway.base_url)
    assert routes.get("/v1/messages") == 1, routes


# -- Claude Code, as it calls -------------------------------------------------------------------------------

CLAUDE_CODE_BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
TOOLS = [
    {
        "name": "Read",
        "description": "Reads a file from the local filesystem.",
        "input_schema": {
            "type": "object",
            "properties": {"file_path": {"type": "string"}, "limit": {"type": "number"}},
            "required": ["file_path"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    },
    {
        "name": "Bash",
        "description": "Executes a bash command.",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
            "required": ["command"],
        },
    },
]


def claude_code_body(model: str) -> dict[str, Any]:
    """A turn as Claude Code sends it: system text blocks with cache_control, tools, thinking, a tool history."""
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "metadata": {"user_id": "user_abc123_account__session_0f1e2d3c"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "Use the tools to help the user.", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is in README.md?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me read it."},
                    {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "/w/README.md"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "# Demo\nA demo project."},
                    {"type": "text", "text": "Summarise it.", "cache_control": {"type": "ephemeral"}},
                ],
            },
        ],
    }


CLAUDE_CODE_HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": CLAUDE_CODE_BETAS}


def _well_formed(events: list[tuple[str, dict[str, Any]]]) -> None:
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"], names
    opened: list[int] = []
    for name, data in events:
        if name == "content_block_start":
            opened.append(data["index"])
        elif name in ("content_block_delta", "content_block_stop"):
            assert opened and data["index"] == opened[-1], (name, data)
    assert opened == list(range(len(opened)))


def test_claude_code_through_a_native_deployment(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    set_user(gateway.base_url, "coder", monthly_token_budget=200_000)
    key = create_key(gateway.base_url, "coder")
    fakes["anthropic"].push(Reply("A demo project.", thinking="The README is short."))
    body = claude_code_body(CLAUDE)
    response, events = sse_events(
        gateway.base_url, body, key=key, path="/v1/messages?beta=true", headers=CLAUDE_CODE_HEADERS
    )
    assert response.status_code == 200 and response.headers["x-gateway-provider"] == "anthropic"
    sent = fakes["anthropic"].chat_requests[0]
    assert sent.body == body
    assert sent.headers["anthropic-beta"] == CLAUDE_CODE_BETAS and sent.headers["anthropic-version"] == "2023-06-01"
    assert key not in str(sent.headers)
    _well_formed(events)
    deltas = [data["delta"]["type"] for name, data in events if name == "content_block_delta"]
    assert deltas[0] == "thinking_delta" and "signature_delta" in deltas and deltas[-1] == "text_delta"
    assert "x-gateway-dropped-params" not in response.headers

    counted = httpx.post(
        f"{gateway.base_url}/v1/messages/count_tokens?beta=true",
        json={key: value for key, value in body.items() if key not in ("max_tokens", "stream", "metadata")},
        headers={"authorization": f"Bearer {key}", **CLAUDE_CODE_HEADERS},
    )
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    assert fakes["anthropic"].count_tokens_requests[0].headers["anthropic-beta"] == CLAUDE_CODE_BETAS


def test_claude_code_through_a_translated_deployment(
    start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    config = write_groups(tmp_path, fakes, {"sonnet-on-gpt": [{"provider": "openai", "model": "gpt-4o"}]})
    gateway = start_gateway({**fake_env, "GATEWAY_CONFIG": config})
    set_user(gateway.base_url, "coder", monthly_token_budget=200_000)
    key = create_key(gateway.base_url, "coder")
    fakes["openai"].push(
        Reply(
            "Reading more.",
            tool_calls=[
                {"id": "call_2", "type": "function", "function": {"name": "Bash", "arguments": '{"command":"ls"}'}}
            ],
        )
    )
    body = claude_code_body("sonnet-on-gpt")
    response, events = sse_events(
        gateway.base_url, copy.deepcopy(body), key=key, path="/v1/messages?beta=true", headers=CLAUDE_CODE_HEADERS
    )
    assert response.status_code == 200, events
    assert response.headers["x-gateway-provider"] == "openai"
    assert "thinking" in response.headers["x-gateway-dropped-params"].split(",")
    _well_formed(events)
    blocks = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert blocks == [
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "call_2", "name": "Bash", "input": {}},
    ]
    assert dict(events)["message_delta"]["delta"]["stop_reason"] == "tool_use"

    sent = fakes["openai"].chat_requests[0].body
    assert sent["model"] == "gpt-4o" and sent["max_completion_tokens"] == 32000 and sent["stream"] is True
    assert sent["user"] == body["metadata"]["user_id"]
    assert [message["role"] for message in sent["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "toolu_01", "content": "# Demo\nA demo project."}
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["Read", "Bash"]
    assert "reasoning_effort" not in sent and "thinking" not in sent

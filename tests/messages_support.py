"""What the Messages API's end-to-end tests share: official Anthropic SDK clients that are always closed,
raw Anthropic SSE read over httpx, and a gateway.yaml with model groups of the test's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.fakes import FakeProvider
from tests.harness import GatewayServer

JSON = dict[str, Any]
CLAUDE = "claude-sonnet-4-20250514"  # a bare claude-… name: routed straight to the anthropic deployment
MakeAnthropic = Callable[..., anthropic.Anthropic]


@pytest.fixture
def claude() -> Iterator[MakeAnthropic]:
    """``claude(gateway, key, **options)``: the official Anthropic client on the gateway, no retries (``api_key=key``
    unless ``options`` name the credential another way); closed after the test."""
    opened: list[anthropic.Anthropic] = []

    def make(gateway: GatewayServer, key: str | None = None, **options: Any) -> anthropic.Anthropic:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 30)
        if key is not None:
            options.setdefault("api_key", key)
        made = anthropic.Anthropic(base_url=gateway.base_url, **options)
        opened.append(made)
        return made

    yield make
    for made in opened:
        made.close()


def user_turn(text: str = "Say hello.", *, model: str = CLAUDE, max_tokens: int = 64, **extra: Any) -> JSON:
    """The keyword arguments of one ``messages.create`` (also a raw request body)."""
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}], **extra}


def sse_events(
    base_url: str,
    body: Mapping[str, Any],
    *,
    key: str,
    path: str = "/v1/messages",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> tuple[httpx.Response, list[tuple[str, JSON]]]:
    """A Messages stream's raw events, ``(name, data)`` in order; every event is framed ``event:`` then one
    ``data:`` line, and its ``data.type`` is its name."""
    sent = {"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01", **(headers or {})}
    with httpx.stream("POST", base_url + path, json=dict(body), headers=sent, timeout=timeout) as response:
        text = "".join(response.iter_text())
    events: list[tuple[str, JSON]] = []
    for block in filter(None, text.split("\n\n")):
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        name, data = lines[0][len("event: ") :], orjson.loads(lines[1][len("data: ") :])
        assert data["type"] == name, block
        events.append((name, data))
    return response, events


def write_groups(tmp_path: Path, fakes: Mapping[str, FakeProvider], groups: Mapping[str, list[JSON]]) -> str:
    """A gateway.yaml with the three fakes as providers and ``groups`` as its model groups; its path."""
    providers = {
        name: {"type": "anthropic" if name == "anthropic" else "openai", "api_key": fake.api_key,
               "base_url": fake.base_url}
        for name, fake in fakes.items()
    }  # fmt: skip
    path = tmp_path / "gateway.yaml"
    path.write_bytes(orjson.dumps({"providers": providers, "models": dict(groups)}))  # JSON is YAML
    return str(path)

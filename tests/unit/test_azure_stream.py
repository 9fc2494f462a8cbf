"""Azure's chat stream as the gateway reads it: the prompt filter's preamble (``choices: []``, empty id and model)
rides on the role chunk, so the router waits for content, and the cache, the meter and usage read real ids and
models; per-chunk ``content_filter_results`` and a ``content_filter`` finish pass through untouched."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import orjson
import pytest
from pydantic import SecretStr

from llm_gateway.cache import chunks_to_completion
from llm_gateway.errors import UpstreamStreamError
from llm_gateway.http import SSEEvent, UpstreamResponse
from llm_gateway.providers.azure import AzureProvider, AzureStream, is_prompt_filter_preamble
from llm_gateway.schemas.core import Usage
from llm_gateway.settings import ProviderConfig
from llm_gateway.surfaces.chat import ChatSurface

SAFE = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": {**SAFE, "jailbreak": {"filtered": False,
                                                                                      "detected": False}}}]  # fmt: skip
PREAMBLE = {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": PROMPT_FILTER}
HEAD = {"created": 1733000000, "id": "chatcmpl-AZ1", "model": "gpt-4o-2024-08-06", "object": "chat.completion.chunk",
        "system_fingerprint": "fp_azure"}  # fmt: skip


def choice(delta: dict[str, Any] | None, finish: str | None = None, filters: Any = SAFE) -> dict[str, Any]:
    made: dict[str, Any] = {"content_filter_results": filters, "finish_reason": finish, "index": 0, "logprobs": None}
    if delta is not None:
        made["delta"] = delta
    return made


def chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"choices": list(choices), **HEAD, **extra}


ROLE = chunk(choice({"content": "", "refusal": None, "role": "assistant"}, filters={}))
USAGE = chunk(usage={"completion_tokens": 2, "prompt_tokens": 9, "total_tokens": 11})


def recorded(finish: str = "stop") -> list[dict[str, Any] | str]:
    """A stream as Azure sends it with ``include_usage`` (keys in Azure's alphabetical order)."""
    return [
        PREAMBLE,
        ROLE,
        chunk(choice({"content": "Hi"})),
        chunk(choice({"content": " there"})),
        chunk(choice({}, finish, filters={})),
        USAGE,
        "[DONE]",
    ]


def open_stream() -> AzureStream:
    config = ProviderConfig(type="azure", api_key=SecretStr("k-1"), base_url="https://r.openai.azure.com")
    return AzureStream(AzureProvider("azure", config), cast(UpstreamResponse, None), deadline=float("inf"))


def feed(stream: AzureStream, events: Iterable[dict[str, Any] | str]) -> list[bytes]:
    relayed: list[bytes] = []
    for event in events:
        data = event.encode() if isinstance(event, str) else orjson.dumps(event)
        relayed.extend(stream.translate(SSEEvent("message", data)))
    return relayed


def test_the_preamble_rides_on_the_role_chunk() -> None:
    stream = open_stream()
    relayed = feed(stream, recorded())
    assert [orjson.loads(item) for item in relayed] == [
        {**ROLE, "prompt_filter_results": PROMPT_FILTER},
        *recorded()[2:6],
    ]
    assert relayed[1:] == [orjson.dumps(event) for event in recorded()[2:6]]  # the rest: the upstream's bytes
    assert stream.finished
    assert stream.usage == Usage(prompt_tokens=9, completion_tokens=2)


def test_the_router_waits_past_the_preamble_for_content() -> None:
    has_content = ChatSurface().has_content
    assert has_content(orjson.dumps(PREAMBLE))  # relayed as it came, it would commit the stream at once
    relayed = feed(open_stream(), recorded())
    assert [has_content(item) for item in relayed] == [False, True, True, True, True]


def test_the_cache_and_the_meter_read_the_real_id_and_model() -> None:
    relayed = feed(open_stream(), recorded())
    assembled = chunks_to_completion([orjson.loads(item) for item in relayed])
    assert (assembled["id"], assembled["model"], assembled["created"]) == (
        "chatcmpl-AZ1",
        "gpt-4o-2024-08-06",
        1733000000,
    )
    assert assembled["choices"][0]["message"]["content"] == "Hi there"
    models: list[str] = []

    class Observer:
        def text(self, text: str) -> None: ...
        def finish(self, index: int, reason: str) -> None: ...
        def model(self, name: str) -> None:
            models.append(name)

    for item in relayed:
        ChatSurface().read_item(item, Observer())
    assert "" not in models


def test_an_answer_filtered_on_the_way_out_is_relayed_as_it_is() -> None:
    filtered = {**SAFE, "violence": {"filtered": True, "severity": "medium"}}
    events = [PREAMBLE, ROLE, chunk(choice({"content": "Par"})), chunk(choice({}, "content_filter", filters=filtered)),
              "[DONE]"]  # fmt: skip
    relayed = feed(open_stream(), events)
    assert orjson.loads(relayed[-1]) == events[3]
    assert chunks_to_completion([orjson.loads(item) for item in relayed])["choices"][0]["finish_reason"] == (
        "content_filter"
    )


def test_asynchronous_filter_annotations_pass_through() -> None:
    """Azure's asynchronous filter mode annotates text already sent, in chunks without a delta or an id."""
    annotation = {"choices": [choice(None, filters=SAFE) | {"content_filter_offsets": {"check_offset": 2}}],
                  "created": 0, "id": "", "model": "", "object": ""}  # fmt: skip
    events = [PREAMBLE, ROLE, chunk(choice({"content": "Hi"})), annotation, chunk(choice({}, "stop")), "[DONE]"]
    relayed = feed(open_stream(), events)
    assert relayed[2] == orjson.dumps(annotation)
    assembled = chunks_to_completion([orjson.loads(item) for item in relayed])
    assert (assembled["id"], assembled["choices"][0]["message"]["content"]) == ("chatcmpl-AZ1", "Hi")


def test_an_error_right_after_the_preamble_fails_the_stream_before_anything_is_relayed() -> None:
    stream = open_stream()
    assert feed(stream, [PREAMBLE]) == []
    with pytest.raises(UpstreamStreamError, match="stream failed: The server had an error"):
        feed(stream, [{"error": {"message": "The server had an error", "code": "500"}}])


def test_a_preamble_without_choices_after_it_is_still_relayed() -> None:
    stream = open_stream()
    assert feed(stream, [PREAMBLE, USAGE, "[DONE]"]) == [orjson.dumps(PREAMBLE), orjson.dumps(USAGE)]
    stream = open_stream()
    assert feed(stream, [PREAMBLE, "[DONE]"]) == [orjson.dumps(PREAMBLE)]


def test_a_stream_without_preamble_is_relayed_byte_for_byte() -> None:
    events = recorded()[1:]
    relayed = feed(open_stream(), events)
    assert relayed == [orjson.dumps(event) for event in events[:-1]]


@pytest.mark.parametrize(
    ("chunk_", "expected"),
    [(PREAMBLE, True), ({**PREAMBLE, "usage": {"total_tokens": 1}}, False), (ROLE, False), ({"choices": []}, False)],
)
def test_what_counts_as_the_preamble(chunk_: dict[str, Any], expected: bool) -> None:
    assert is_prompt_filter_preamble(chunk_) is expected


def test_the_stream_hands_on_its_last_payload_parsed_and_no_other() -> None:
    stream = open_stream()
    held = feed(stream, recorded()[:1])
    assert held == []
    role, content = feed(stream, recorded()[1:3])
    assert stream.parsed(content) == orjson.loads(content)
    assert stream.parsed(role) is None  # not the last one: its reader parses it
    assert stream.parsed(orjson.dumps(recorded()[2])) is None  # equal bytes, not the payload relayed

"""``body_send``: a streamed body goes past the send wrappers that are done with the response, and only those."""

from __future__ import annotations

import gc
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from llm_gateway.api.middleware import RequestIdMiddleware
from llm_gateway.asgi import body_send, pass_body
from llm_gateway.telemetry import RequestRecord
from llm_gateway.telemetry.early_refusals import EarlyRefusalRecorder

ROUTE = "/v1/chat/completions"
SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": ROUTE, "headers": [], "root_path": ""}


async def run(status: int) -> tuple[list[Message], list[RequestRecord], Send, Send]:
    """Through both of the chat route's wrappers: what reached the server, what was recorded, and the sends
    the app was given and would use for the body."""
    sent: list[Message] = []
    records: list[RequestRecord] = []
    seen: dict[str, Send] = {}

    async def server_send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        seen["given"], seen["body"] = send, body_send(send)
        for part in (b"a", b"b"):
            await seen["body"]({"type": "http.response.body", "body": part, "more_body": True})
        await seen["body"]({"type": "http.response.body", "body": b"", "more_body": False})

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    wrapped = RequestIdMiddleware(EarlyRefusalRecorder(app, records.append, {ROUTE: ROUTE}))
    await wrapped({**SCOPE, "state": {}}, receive, server_send)
    return sent, records, seen["given"], seen["body"]


async def test_a_successful_stream_sends_its_body_straight_to_the_server() -> None:
    sent, records, given, body = await run(200)
    assert given is not body
    assert getattr(body, "__self__", None) is None and body.__name__ == "server_send"
    assert (b"x-content-type-options", b"nosniff") in sent[0]["headers"]  # the start still went through both
    assert [m.get("body") for m in sent[1:]] == [b"a", b"b", b""]
    assert records == []


async def test_a_refusal_keeps_the_recorder_on_its_body() -> None:
    sent, records, _, body = await run(429)
    assert type(body).__name__ == "_StatusSend"  # the request id's wrapper stepped aside, the recorder did not
    assert [m.get("body") for m in sent[1:]] == [b"a", b"b", b""]
    assert [record.status for record in records] == [429]


def test_a_send_nobody_marked_is_its_own_body_send() -> None:
    async def send(message: Message) -> None: ...

    async def outer(message: Message) -> None: ...

    assert body_send(send) is send
    pass_body(outer, send)
    assert body_send(outer) is send


async def test_the_wrappers_leave_no_reference_cycle_behind() -> None:
    """Garbage in cycles waits for the cyclic collector, whose pauses delay every stream in flight."""
    gc.collect()
    gc.disable()
    try:
        for status in (200, 429):
            await run(status)
        assert gc.collect() == 0
    finally:
        gc.enable()

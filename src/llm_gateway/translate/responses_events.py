"""OpenAI Responses stream events: how each is built (shared by the live translation of a chat stream and the
replay of a whole Response), a Response replayed as its stream (cache hits), and a stream assembled back
into its Response (cache, store, telemetry).

Everything here is linear in the size of the answer: streamed pieces are kept as lists and joined once.
"""

from __future__ import annotations

from typing import Any

Event = tuple[str, dict[str, Any]]

# A Response's status -> the event that ends its stream.
TERMINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}
_PART_EVENTS = {  # content part type -> (delta event, done event, the part's text field)
    "output_text": ("response.output_text.delta", "response.output_text.done", "text"),
    "refusal": ("response.refusal.delta", "response.refusal.done", "refusal"),
}
_ARGUMENTS = -1  # the content index under which a function call's arguments are assembled


class EventLog:
    """Builds events numbered in order: ``sequence_number`` 0, 1, 2, ... as OpenAI sends them."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def __call__(self, kind: str, **data: Any) -> Event:
        number = self._next
        self._next += 1
        return kind, {"type": kind, "sequence_number": number, **data}


def event_logprobs(logprobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An output_text part's logprobs as the text events carry them (without bytes)."""
    out = []
    for entry in logprobs:
        top = entry.get("top_logprobs")
        alternatives = [{"token": t.get("token"), "logprob": t.get("logprob")} for t in top] if top else []
        out.append({"token": entry.get("token"), "logprob": entry.get("logprob"), "top_logprobs": alternatives})
    return out


def opening(log: EventLog, response: dict[str, Any]) -> list[Event]:
    """response.created and response.in_progress, each with the response as it starts: no output, no usage."""
    started = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    started["error"] = None
    return [log("response.created", response=started), log("response.in_progress", response=dict(started))]


def closing(log: EventLog, response: dict[str, Any]) -> list[Event]:
    """The event that ends the stream of ``response`` (none while it is in progress)."""
    kind = TERMINAL_EVENTS.get(str(response.get("status")))
    return [log(kind, response=response)] if kind else []


def item_added(log: EventLog, index: int, item: dict[str, Any]) -> Event:
    return log("response.output_item.added", output_index=index, item=item)


def item_done(log: EventLog, index: int, item: dict[str, Any]) -> Event:
    return log("response.output_item.done", output_index=index, item=item)


def part_added(log: EventLog, item_id: str, index: int, part_index: int, part: dict[str, Any]) -> Event:
    return log("response.content_part.added", item_id=item_id, output_index=index, content_index=part_index, part=part)


def part_delta(
    log: EventLog, item_id: str, index: int, part_index: int, kind: str, delta: str, logprobs: list[dict[str, Any]]
) -> Event:
    where = {"item_id": item_id, "output_index": index, "content_index": part_index}
    if kind == "refusal":
        return log("response.refusal.delta", **where, delta=delta)
    return log("response.output_text.delta", **where, delta=delta, logprobs=event_logprobs(logprobs))


def part_done(log: EventLog, item_id: str, index: int, part_index: int, part: dict[str, Any]) -> list[Event]:
    """The text's (or refusal's) done event, then content_part.done."""
    where = {"item_id": item_id, "output_index": index, "content_index": part_index}
    kind = part.get("type")
    events = []
    if kind == "refusal":
        events.append(log("response.refusal.done", **where, refusal=part.get("refusal")))
    elif kind == "output_text":
        logprobs = event_logprobs(part.get("logprobs") or [])
        events.append(log("response.output_text.done", **where, text=part.get("text"), logprobs=logprobs))
    events.append(log("response.content_part.done", **where, part=part))
    return events


def arguments_delta(log: EventLog, item_id: str, index: int, delta: str) -> Event:
    return log("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=delta)


def call_done(log: EventLog, index: int, item: dict[str, Any]) -> list[Event]:
    """function_call_arguments.done, then output_item.done."""
    arguments = item["arguments"]
    done = log("response.function_call_arguments.done", item_id=item["id"], output_index=index, arguments=arguments)
    return [done, item_done(log, index, item)]


# ------------------------------------------------------------------------------------ replay


def response_to_events(response: dict[str, Any]) -> list[Event]:
    """A whole Response replayed as the stream that would have carried it, in the order a live translated
    stream has: created, in_progress; per item added, its parts (each text in one delta), done; then the
    terminal event with the Response itself. Fed to ``ResponseAssembly``, they give ``response`` back."""
    log = EventLog()
    events = opening(log, response)
    output = response.get("output")
    for index, item in enumerate(output if isinstance(output, list) else ()):
        if isinstance(item, dict):
            events.extend(_item_events(log, index, item))
    return events + closing(log, response)


def _item_events(log: EventLog, index: int, item: dict[str, Any]) -> list[Event]:
    kind, item_id = item.get("type"), str(item.get("id") or "")
    if kind == "function_call":
        arguments = item.get("arguments")
        events = [item_added(log, index, {**item, "status": "in_progress", "arguments": ""})]
        if isinstance(arguments, str) and arguments:
            events.append(arguments_delta(log, item_id, index, arguments))
        return events + call_done(log, index, {**item, "arguments": arguments if isinstance(arguments, str) else ""})
    if kind != "message" or not isinstance(item.get("content"), list):
        return [item_added(log, index, item), item_done(log, index, item)]  # items a chat answer never has
    events = [item_added(log, index, {**item, "status": "in_progress", "content": []})]
    for part_index, part in enumerate(part for part in item["content"] if isinstance(part, dict)):
        spec = _PART_EVENTS.get(str(part.get("type")))
        if spec is None:  # parts a chat answer never has: added and done, whole
            events.append(part_added(log, item_id, index, part_index, part))
            events.extend(part_done(log, item_id, index, part_index, part))
            continue
        field = spec[2]
        text = part.get(field)
        start = {**part, field: ""}
        if field == "text":  # annotations and logprobs come whole with the done events
            start.update(annotations=[], logprobs=[])
        events.append(part_added(log, item_id, index, part_index, start))
        if isinstance(text, str) and text:
            logprobs = part["logprobs"] if isinstance(part.get("logprobs"), list) else []
            events.append(part_delta(log, item_id, index, part_index, str(part["type"]), text, logprobs))
        events.extend(part_done(log, item_id, index, part_index, part))
    return [*events, item_done(log, index, item)]


# ------------------------------------------------------------------------------------ assembly


class ResponseAssembly:
    """The events of one Responses stream -> the Response they describe.

    The terminal event (completed, incomplete, failed) carries the whole Response, which wins; before it (a
    stream cut short), the Response is rebuilt from response.created and the items: each done item as sent,
    each open one from its added event and the deltas since. Unknown events are ignored.
    """

    __slots__ = ("_done", "_items", "_pieces", "_started", "_terminal")

    def __init__(self) -> None:
        self._started: dict[str, Any] | None = None  # from response.created / in_progress
        self._terminal: dict[str, Any] | None = None
        self._items: dict[int, dict[str, Any]] = {}  # output_index -> the item as added, its parts as added
        self._done: dict[int, dict[str, Any]] = {}  # output_index -> the item as output_item.done sent it
        # output_index -> content index (_ARGUMENTS for a call's arguments) -> (field, pieces still to join)
        self._pieces: dict[int, dict[int, tuple[str, list[str]]]] = {}

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind in ("response.created", "response.in_progress", "response.queued"):
            if isinstance(event.get("response"), dict):
                self._started = event["response"]
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            if isinstance(event.get("response"), dict):
                self._terminal = event["response"]
        elif kind == "response.output_item.added":
            self._added(event.get("output_index"), event.get("item"))
        elif kind == "response.output_item.done":
            if isinstance(event.get("output_index"), int) and isinstance(event.get("item"), dict):
                self._done[event["output_index"]] = event["item"]
        elif kind in ("response.content_part.added", "response.content_part.done"):
            self._part(event.get("output_index"), event.get("content_index"), event.get("part"))
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            self._delta(event.get("output_index"), event.get("content_index"), event.get("delta"))
        elif kind == "response.function_call_arguments.delta":
            self._delta(event.get("output_index"), _ARGUMENTS, event.get("delta"))

    def _added(self, index: Any, item: Any) -> None:
        if not isinstance(index, int) or not isinstance(item, dict):
            return
        item = dict(item)
        pieces = self._pieces[index] = {}
        if item.get("type") == "message":
            item["content"] = list(item["content"]) if isinstance(item.get("content"), list) else []
        elif item.get("type") == "function_call":
            arguments = item.get("arguments")
            pieces[_ARGUMENTS] = ("arguments", [arguments] if isinstance(arguments, str) and arguments else [])
        self._items[index] = item

    def _part(self, index: Any, part_index: Any, part: Any) -> None:
        item = self._items.get(index) if isinstance(index, int) else None
        if item is None or not isinstance(part_index, int) or part_index < 0 or not isinstance(part, dict):
            return
        content = item.get("content")
        if not isinstance(content, list):
            return
        part = dict(part)
        if part_index < len(content):
            content[part_index] = part
        else:
            content.append(part)
            part_index = len(content) - 1
        spec = _PART_EVENTS.get(str(part.get("type")))
        if spec is not None:  # an added part starts the pieces; a done one is whole and replaces them
            start = part.get(spec[2])
            self._pieces[index][part_index] = (spec[2], [start] if isinstance(start, str) and start else [])

    def _delta(self, index: Any, part_index: Any, delta: Any) -> None:
        pieces = self._pieces.get(index) if isinstance(index, int) else None
        slot = pieces.get(part_index) if pieces is not None and isinstance(part_index, int) else None
        if slot is not None and isinstance(delta, str):
            slot[1].append(delta)

    def result(self) -> dict[str, Any]:
        """The terminal event's Response when one came, else the best reconstruction (status as the stream
        began: ``in_progress``, which ``is_whole`` never takes for a whole answer)."""
        if self._terminal is not None and isinstance(self._terminal.get("output"), list):
            return self._terminal
        base = self._terminal or self._started or {"object": "response", "status": "in_progress", "usage": None}
        indexes = sorted(self._items.keys() | self._done.keys())
        return {**base, "output": [self._done.get(index) or self._joined(index) for index in indexes]}

    def _joined(self, index: int) -> dict[str, Any]:
        item = self._items[index]
        content = item.get("content")
        for part_index, (field, pieces) in self._pieces.get(index, {}).items():
            joined = "".join(pieces)
            pieces[:] = [joined]
            if part_index == _ARGUMENTS:
                item["arguments"] = joined
            elif isinstance(content, list) and part_index < len(content):
                content[part_index] = {**content[part_index], field: joined}
        return {**item, "content": list(content)} if isinstance(content, list) else dict(item)

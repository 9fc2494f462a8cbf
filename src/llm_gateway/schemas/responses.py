"""OpenAI's Responses API: the request check the route runs (by hand, for speed), the errors it adds, and the
pydantic models that only describe it in ``/openapi.json``.

The check covers what the gateway itself reads (the model, the input, the cap, the tools, the stored
conversation a request continues); everything else passes through to a native deployment untouched and is
read by the translation (``translate.responses_chat``) for the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llm_gateway.errors import InvalidRequest
from llm_gateway.schemas.openai import load_json_object

if TYPE_CHECKING:
    from llm_gateway.store.conversations import StoredResponse

MAX_RESPONSE_ID_CHARS = 64  # the store's id column; OpenAI's ids are ~50 characters
# Parameters the gateway refuses: each needs state kept upstream under the gateway's one provider key, which
# every caller would share (a conversation, a background job to poll): no caller could be kept from another's.
REFUSED_PARAMS = {
    "conversation": "'conversation' is not supported through the gateway: continue with 'previous_response_id'.",
    "background": "'background' responses are not supported through the gateway.",
}


@dataclass(slots=True)
class ResponsesRequest:
    """A validated Responses request. ``previous``: the stored response it continues, loaded by the route
    (``previous_response_id`` belongs to the caller, checked before anything is counted)."""

    body: dict[str, Any]
    model: str
    stream: bool
    store: bool
    previous_response_id: str | None
    builtin_tools: tuple[str, ...]
    previous: StoredResponse | None = field(default=None)

    def history(self) -> list[dict[str, Any]]:
        """The items that come before this request's ``input``: the continued conversation, or none."""
        return self.previous.history() if self.previous is not None else []


class PreviousResponseNotFound(InvalidRequest):
    """400, OpenAI's answer for a ``previous_response_id`` it does not hold: the same for an id that never
    existed, one that expired and another caller's (no existence oracle)."""

    code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Previous response with id '{response_id}' not found.", param="previous_response_id")


class ResponseNotFound(InvalidRequest):
    """404 for ``GET``/``DELETE /v1/responses/{id}``: unknown, expired, or another caller's, alike."""

    status = 404
    code = "not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Response with id '{response_id}' not found.")


def parse_responses_request(raw: bytes) -> ResponsesRequest:
    """Check what the gateway reads; bad input is a 400 naming the field, never a failure further on."""
    body = load_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter (a non-empty string).", param="model")
    for name, message in REFUSED_PARAMS.items():
        if body.get(name) not in (None, False):
            raise InvalidRequest(message, param=name)
    _check_input(body.get("input"))
    stream = _optional(body, "stream", bool, "a boolean")
    store = _optional(body, "store", bool, "a boolean")
    previous = _optional(body, "previous_response_id", str, "a string")
    if previous is not None and not 0 < len(previous) <= MAX_RESPONSE_ID_CHARS:
        raise PreviousResponseNotFound(previous[:MAX_RESPONSE_ID_CHARS])
    _optional(body, "instructions", str, "a string")
    cap = body.get("max_output_tokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise InvalidRequest("'max_output_tokens' must be an integer of at least 1.", param="max_output_tokens")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise InvalidRequest(f"'{name}' must be a number.", param=name)
    for name in ("text", "metadata", "reasoning"):
        _optional(body, name, dict, "an object")
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and not isinstance(tool_choice, str | dict):
        raise InvalidRequest("'tool_choice' must be a string or an object.", param="tool_choice")
    return ResponsesRequest(
        body=body,
        model=model,
        stream=bool(stream),
        store=store is not False,
        previous_response_id=previous,
        builtin_tools=_check_tools(body.get("tools")),
    )


def _optional(body: dict[str, Any], name: str, kind: type, described: str) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise InvalidRequest(f"'{name}' must be {described}.", param=name)
    return value


def _check_input(value: Any) -> None:
    """A string, or a list of items (objects; a message's ``content`` a string or a list of parts)."""
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string or an array of input items.", param="input")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"'input[{index}]' must be an object.", param=f"input[{index}]")
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            raise InvalidRequest(f"'input[{index}].type' must be a string.", param=f"input[{index}].type")
        if kind == "message":
            if not isinstance(item.get("role"), str):
                raise InvalidRequest(f"'input[{index}].role' must be a string.", param=f"input[{index}].role")
            content = item.get("content")
            if not isinstance(content, str | list):
                raise InvalidRequest(
                    f"'input[{index}].content' must be a string or an array of content parts.",
                    param=f"input[{index}].content",
                )
            if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
                raise InvalidRequest(
                    f"'input[{index}].content' parts must be objects.", param=f"input[{index}].content"
                )


def _check_tools(tools: Any) -> tuple[str, ...]:
    """Each tool an object with a ``type`` (a function one with a ``name``); the built-in tools' types, in order:
    those exist only on a deployment that speaks the Responses API natively."""
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    builtin: list[str] = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str):
            raise InvalidRequest(f"'tools[{index}]' must be an object with a 'type'.", param=f"tools[{index}]")
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest(f"'tools[{index}].name' must be a non-empty string.", param=f"tools[{index}].name")
        elif kind not in builtin:
            builtin.append(kind)
    return tuple(builtin)


# --- Documentation-only models (OpenAPI) -------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class CreateResponseRequest(_Open):
    """OpenAI's Responses request. Fields not listed pass through to a native deployment."""

    model: str = Field(min_length=1, description="A model group, a provider/model name, or a bare provider model")
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = Field(None, description="A stored response of the caller's to continue")
    store: bool | None = Field(None, description="Keep the response (30 days) for retrieval and follow-ups")
    stream: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None


class ResponseUsage(_Open):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class ResponseObject(_Open):
    id: str
    object: Literal["response"]
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: ResponseUsage | None = None


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True

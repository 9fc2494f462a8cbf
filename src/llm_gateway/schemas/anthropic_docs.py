"""Anthropic's Messages API as ``/openapi.json`` describes it: pydantic models for the documentation only,
never built per request (``schemas/anthropic.py`` checks requests by hand, for speed)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class MessageParam(_Open):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesMetadata(_Open):
    user_id: str | None = None


class MessagesRequest(_Open):
    """Anthropic's Messages request. Fields not listed pass through to a native deployment untouched."""

    model: str = Field(min_length=1, description="A model group, a provider/model name, or a bare provider model")
    max_tokens: int = Field(ge=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: MessagesMetadata | None = None
    thinking: dict[str, Any] | None = None


class CountTokensRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class MessageUsage(_Open):
    input_tokens: int
    output_tokens: int


class Message(_Open):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: MessageUsage


class TokenCount(BaseModel):
    input_tokens: int


class AnthropicErrorBody(BaseModel):
    type: str
    message: str


class AnthropicErrorEnvelope(_Open):
    type: Literal["error"]
    error: AnthropicErrorBody

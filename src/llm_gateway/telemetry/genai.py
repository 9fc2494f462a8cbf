"""The gateway's records -> OpenTelemetry GenAI semantic-convention attributes. Pure: no OTel import.

Follows https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ and
https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/ . Both ``gen_ai.system``
(conventions up to v1.36) and ``gen_ai.provider.name`` (v1.37 on) are set, so backends reading
either find the provider. Prompts and completions only appear through ``content_attributes``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from llm_gateway.telemetry.record import AttemptRecord, RequestRecord

AttributeValue = str | bool | int | float | tuple[str, ...]
Attributes = dict[str, AttributeValue]
UserIdMode = Literal["hash", "plain", "omit"]

OPERATION = "chat"
OPERATION_NAME = "gen_ai.operation.name"
SYSTEM = "gen_ai.system"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
HTTP_STATUS = "http.response.status_code"

GATEWAY_ATTEMPT = "gateway.attempt"
GATEWAY_ATTEMPTS = "gateway.attempts"
GATEWAY_CACHE = "gateway.cache"
GATEWAY_USER_ID = "gateway.user_id"
GATEWAY_MODEL_GROUP = "gateway.model_group"
GATEWAY_PROVIDER = "gateway.provider"
GATEWAY_REQUEST_ID = "gateway.request_id"
GATEWAY_STREAM = "gateway.stream"
GATEWAY_ERROR = "gateway.error"
GATEWAY_DROPPED_PARAMS = "gateway.dropped_params"
GATEWAY_COST_USD = "gateway.cost_usd"

# Bucket boundaries the GenAI metric conventions ask for.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


# ``gen_ai.provider.name`` of the provider types that are one vendor's service (the conventions' well-known values);
# an ``openai``-type provider is named as configured (``openai``, ``groq``, ``deepseek``...), as before.
PROVIDER_SYSTEMS = {
    "anthropic": "anthropic",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
}


def provider_systems(provider_types: Mapping[str, str]) -> dict[str, str]:
    """Provider name -> its ``gen_ai.provider.name``, for the providers whose type names a vendor's service."""
    return {name: PROVIDER_SYSTEMS[kind] for name, kind in provider_types.items() if kind in PROVIDER_SYSTEMS}


def span_name(model: str, operation: str = OPERATION) -> str:
    return f"{operation} {model}"


def error_kind(status: int | None, code: str | None) -> str:
    """A low-cardinality failure kind: ``http_<status>`` when the upstream answered, else the error code."""
    if status is not None:
        return f"http_{status}"
    return code or "error"


def user_id_value(user_id: str | None, mode: UserIdMode, salt: bytes = b"") -> str | None:
    """The user id as exported to traces: a keyed hash (default), as is, or not at all."""
    if user_id is None or mode == "omit":
        return None
    if mode == "plain":
        return user_id
    return hashlib.blake2b(user_id.encode(), digest_size=12, key=salt[:64]).hexdigest()


def request_parameters(body: Mapping[str, Any] | None) -> Attributes:
    """``max_tokens`` (or ``max_completion_tokens``), ``temperature`` and ``top_p`` when the caller set them."""
    attributes: Attributes = {}
    if not body:
        return attributes
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attributes[REQUEST_MAX_TOKENS] = max_tokens
    for name, key in (("temperature", REQUEST_TEMPERATURE), ("top_p", REQUEST_TOP_P)):
        value = body.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[key] = float(value)
    return attributes


def attempt_attributes(
    record: RequestRecord, attempt: AttemptRecord, index: int, user_id: str | None, system: str | None = None
) -> Attributes:
    """Attributes of the client span of one upstream attempt (``index`` counts from 0); ``system``: the provider's
    ``gen_ai.provider.name`` when it is not its configured name."""
    attributes: Attributes = {
        OPERATION_NAME: record.operation,
        SYSTEM: system or attempt.provider,
        PROVIDER_NAME: system or attempt.provider,
        REQUEST_MODEL: attempt.model,
        GATEWAY_ATTEMPT: index + 1,
        GATEWAY_MODEL_GROUP: record.model,
    }
    attributes.update(request_parameters(record.request_body))
    if record.cache is not None:
        attributes[GATEWAY_CACHE] = record.cache
    if user_id is not None:
        attributes[GATEWAY_USER_ID] = user_id
    if attempt.status is not None:
        attributes[HTTP_STATUS] = attempt.status
    if attempt.error is not None:
        attributes[ERROR_TYPE] = error_kind(attempt.status, attempt.error)
        return attributes
    attributes[RESPONSE_MODEL] = record.response_model or attempt.model
    if record.prompt_tokens is not None:
        attributes[USAGE_INPUT_TOKENS] = record.prompt_tokens
    if record.completion_tokens is not None:
        attributes[USAGE_OUTPUT_TOKENS] = record.completion_tokens
    if record.finish_reasons:
        attributes[FINISH_REASONS] = record.finish_reasons
    if record.dropped_params:
        attributes[GATEWAY_DROPPED_PARAMS] = record.dropped_params
    response_id = record.response_body.get("id") if record.response_body else None
    if isinstance(response_id, str):
        attributes[RESPONSE_ID] = response_id
    return attributes


def server_attributes(record: RequestRecord, user_id: str | None) -> Attributes:
    """What the gateway adds to the request's server span."""
    attributes: Attributes = {
        GATEWAY_REQUEST_ID: record.request_id,
        GATEWAY_MODEL_GROUP: record.model,
        GATEWAY_ATTEMPTS: len(record.attempts),
        GATEWAY_STREAM: record.stream,
    }
    if record.provider is not None:
        attributes[GATEWAY_PROVIDER] = record.provider
    if record.cache is not None:
        attributes[GATEWAY_CACHE] = record.cache
    if user_id is not None:
        attributes[GATEWAY_USER_ID] = user_id
    if record.error is not None:
        attributes[GATEWAY_ERROR] = record.error
    if record.dropped_params:
        attributes[GATEWAY_DROPPED_PARAMS] = record.dropped_params
    if record.cost_usd is not None:
        attributes[GATEWAY_COST_USD] = float(record.cost_usd)  # OTel attributes have no decimal type
    return attributes


def metric_attributes(
    attempt: AttemptRecord, response_model: str | None, operation: str = OPERATION, system: str | None = None
) -> Attributes:
    """Attributes of ``gen_ai.client.operation.duration`` (and, plus the token type, of token usage)."""
    attributes: Attributes = {
        OPERATION_NAME: operation,
        SYSTEM: system or attempt.provider,
        PROVIDER_NAME: system or attempt.provider,
        REQUEST_MODEL: attempt.model,
    }
    if attempt.error is not None:
        attributes[ERROR_TYPE] = error_kind(attempt.status, attempt.error)
    elif response_model is not None:
        attributes[RESPONSE_MODEL] = response_model
    return attributes


def content_attributes(record: RequestRecord) -> Attributes:
    """Prompt and answer as JSON strings; only called when content recording is switched on."""
    attributes: Attributes = {}
    messages = record.request_body.get("messages") if record.request_body else None
    if messages is not None:
        attributes[INPUT_MESSAGES] = orjson.dumps(messages).decode()
    choices = record.response_body.get("choices") if record.response_body else None
    if isinstance(choices, list):
        outputs = [choice.get("message") or choice.get("delta") for choice in choices if isinstance(choice, dict)]
        attributes[OUTPUT_MESSAGES] = orjson.dumps(outputs).decode()
    return attributes

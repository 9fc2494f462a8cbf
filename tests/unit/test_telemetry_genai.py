"""The pure mapping from the gateway's records to GenAI semantic-convention attributes."""

from __future__ import annotations

import orjson

from llm_gateway.telemetry import genai
from llm_gateway.telemetry.record import AttemptRecord, RequestRecord

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 50,
    "temperature": 0,
    "top_p": 0.5,
}
ANSWER = {
    "id": "chatcmpl-1",
    "model": "claude-3-5-haiku-20241022",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
}


def fallback_record() -> RequestRecord:
    return RequestRecord(
        request_id="req-1",
        route="/v1/chat/completions",
        model="gpt-4o-mini",
        start=100.0,
        start_ns=1_700_000_000_000_000_000,
        user_id="user-42",
        provider="anthropic",
        upstream_model="claude-3-5-haiku-latest",
        response_model="claude-3-5-haiku-20241022",
        attempts=[
            AttemptRecord("openai", "gpt-4o-mini", 100.001, 0.2, status=500, error="upstream_error"),
            AttemptRecord("anthropic", "claude-3-5-haiku-latest", 100.202, 0.3, status=200),
        ],
        cache="miss",
        prompt_tokens=11,
        completion_tokens=7,
        finish_reasons=("stop",),
        request_body=BODY,
        response_body=ANSWER,
    )


def test_error_kind_prefers_the_upstream_status() -> None:
    assert genai.error_kind(503, "upstream_error") == "http_503"
    assert genai.error_kind(None, "upstream_timeout") == "upstream_timeout"
    assert genai.error_kind(None, None) == "error"


def test_user_id_is_hashed_by_default_and_can_be_plain_or_omitted() -> None:
    hashed = genai.user_id_value("user-42", "hash")
    assert hashed is not None and "user-42" not in hashed and len(hashed) == 24
    assert genai.user_id_value("user-42", "hash") == hashed
    assert genai.user_id_value("user-42", "hash", b"salt") != hashed
    assert genai.user_id_value("user-42", "plain") == "user-42"
    assert genai.user_id_value("user-42", "omit") is None
    assert genai.user_id_value(None, "plain") is None


def test_request_parameters() -> None:
    assert genai.request_parameters(BODY) == {
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.top_p": 0.5,
    }
    assert genai.request_parameters({"max_completion_tokens": 9, "temperature": True}) == {
        "gen_ai.request.max_tokens": 9
    }
    assert genai.request_parameters(None) == {}


def test_failed_attempt_attributes() -> None:
    record = fallback_record()
    assert genai.attempt_attributes(record, record.attempts[0], 0, "u") == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.top_p": 0.5,
        "gateway.attempt": 1,
        "gateway.model_group": "gpt-4o-mini",
        "gateway.cache": "miss",
        "gateway.user_id": "u",
        "http.response.status_code": 500,
        "error.type": "http_500",
    }


def test_answering_attempt_attributes() -> None:
    record = fallback_record()
    assert genai.attempt_attributes(record, record.attempts[1], 1, None) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "anthropic",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-3-5-haiku-latest",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.top_p": 0.5,
        "gateway.attempt": 2,
        "gateway.model_group": "gpt-4o-mini",
        "gateway.cache": "miss",
        "http.response.status_code": 200,
        "gen_ai.response.model": "claude-3-5-haiku-20241022",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.response.finish_reasons": ("stop",),
    }


def test_attributes_never_carry_content() -> None:
    record = fallback_record()
    for index, attempt in enumerate(record.attempts):
        assert "Say hello." not in repr(genai.attempt_attributes(record, attempt, index, None))
        assert "Hello!" not in repr(genai.attempt_attributes(record, attempt, index, None))
    assert "Say hello." not in repr(genai.server_attributes(record, None))


def test_server_attributes() -> None:
    assert genai.server_attributes(fallback_record(), "h") == {
        "gateway.request_id": "req-1",
        "gateway.model_group": "gpt-4o-mini",
        "gateway.attempts": 2,
        "gateway.stream": False,
        "gateway.provider": "anthropic",
        "gateway.cache": "miss",
        "gateway.user_id": "h",
    }


def test_metric_attributes() -> None:
    record = fallback_record()
    assert genai.metric_attributes(record.attempts[0], None) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "error.type": "http_500",
    }
    assert genai.metric_attributes(record.attempts[1], "claude-3-5-haiku-20241022")["gen_ai.response.model"] == (
        "claude-3-5-haiku-20241022"
    )


def test_content_attributes_are_json() -> None:
    attributes = genai.content_attributes(fallback_record())
    assert orjson.loads(str(attributes["gen_ai.input.messages"])) == BODY["messages"]
    assert orjson.loads(str(attributes["gen_ai.output.messages"])) == [{"role": "assistant", "content": "Hello!"}]


def test_span_name_and_bucket_boundaries_follow_the_conventions() -> None:
    assert genai.span_name("gpt-4o") == "chat gpt-4o"
    assert genai.TOKEN_BUCKETS[:3] == (1, 4, 16) and genai.TOKEN_BUCKETS[-1] == 67108864
    assert genai.DURATION_BUCKETS[0] == 0.01 and genai.DURATION_BUCKETS[-1] == 81.92


def test_parameters_the_answering_deployment_did_not_honour_are_on_its_span_and_the_server_span() -> None:
    record = fallback_record()
    record.dropped_params = ("seed", "temperature")
    failed, answered = record.attempts
    assert genai.GATEWAY_DROPPED_PARAMS not in genai.attempt_attributes(record, failed, 0, None)
    assert genai.attempt_attributes(record, answered, 1, None)[genai.GATEWAY_DROPPED_PARAMS] == ("seed", "temperature")
    assert genai.server_attributes(record, None)[genai.GATEWAY_DROPPED_PARAMS] == ("seed", "temperature")


def test_an_embeddings_request_is_named_so_on_its_spans_and_metrics() -> None:
    record = fallback_record()
    record.operation = "embeddings"
    _, answered = record.attempts
    assert genai.attempt_attributes(record, answered, 1, None)[genai.OPERATION_NAME] == "embeddings"
    assert genai.metric_attributes(answered, None, record.operation)[genai.OPERATION_NAME] == "embeddings"
    assert genai.span_name("text-embedding-3-small", record.operation) == "embeddings text-embedding-3-small"


def test_cloud_providers_are_named_as_the_conventions_name_them() -> None:
    systems = genai.provider_systems(
        {
            "openai": "openai",
            "groq": "openai",
            "claude": "anthropic",
            "eu": "azure",
            "aws": "bedrock",
            "gemini": "gemini",
            "gcp": "vertex",
        }
    )
    assert systems == {
        "claude": "anthropic",
        "eu": "azure.ai.openai",
        "aws": "aws.bedrock",
        "gemini": "gcp.gemini",
        "gcp": "gcp.vertex_ai",
    }
    attempt = fallback_record().attempts[0]
    assert genai.metric_attributes(attempt, None, system="aws.bedrock")["gen_ai.provider.name"] == "aws.bedrock"
    spans = genai.attempt_attributes(fallback_record(), attempt, 0, None, "gcp.vertex_ai")
    assert (spans["gen_ai.provider.name"], spans["gen_ai.system"]) == ("gcp.vertex_ai", "gcp.vertex_ai")

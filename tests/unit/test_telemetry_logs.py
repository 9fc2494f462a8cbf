"""The per-request log line and the redaction guard: no key, token or prompt ever reaches a log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from llm_gateway.telemetry import AttemptRecord, RequestRecord, Telemetry, TelemetrySettings, setup_logging
from llm_gateway.telemetry.logs import MASK, redact

OPENAI_KEY = "sk-proj-abcdefghijklmnop1234567890"
GATEWAY_KEY = "sk-gw-0123456789abcdef"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLWJ5dGVz"
PROMPT = "my secret diagnosis is"
ANSWER = "the model's private answer"
SECRETS = (OPENAI_KEY, GATEWAY_KEY, JWT, PROMPT, ANSWER)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The root logger set up as the gateway does it (JSON), writing to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    setup_logging("INFO", "json", stream=buffer)
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def record() -> RequestRecord:
    rec = RequestRecord.begin(
        "req-1",
        "/v1/chat/completions",
        "gpt-4o-mini",
        user_id="user-42",
        key_id="key-7",
        provider="anthropic",
        upstream_model="claude-3-5-haiku-latest",
        cache="miss",
        prompt_tokens=11,
        completion_tokens=7,
        finish_reasons=("stop",),
        request_body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "user": JWT},
        response_body={"choices": [{"message": {"role": "assistant", "content": ANSWER}}]},
    )
    rec.attempts = [
        AttemptRecord("openai", "gpt-4o-mini", rec.start, 0.2, status=500, error="upstream_error"),
        AttemptRecord("anthropic", "claude-3-5-haiku-latest", rec.start + 0.2, 0.3, status=200),
    ]
    rec.duration = 0.5012
    return rec


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


def test_one_structured_line_per_request(log_output: io.StringIO) -> None:
    Telemetry.create(TelemetrySettings(), {}).record(record())
    (line,) = lines(log_output)
    assert isinstance(line.pop("ts"), float)
    assert line == {
        "level": "info",
        "logger": "llm_gateway.request",
        "msg": "request",
        "request_id": "req-1",
        "route": "/v1/chat/completions",
        "user_id": "user-42",
        "key_id": "key-7",
        "model": "gpt-4o-mini",
        "provider": "anthropic",
        "upstream_model": "claude-3-5-haiku-latest",
        "stream": False,
        "cache": "miss",
        "status": 200,
        "error": None,
        "attempts": [
            {"provider": "openai", "model": "gpt-4o-mini", "status": 500, "error": "http_500", "ms": 200.0},
            {"provider": "anthropic", "model": "claude-3-5-haiku-latest", "status": 200, "error": None, "ms": 300.0},
        ],
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_ms": 501.2,
        "upstream_ms": 500.0,
        "finish_reasons": ["stop"],
    }
    for secret in SECRETS:
        assert secret not in log_output.getvalue()


def test_no_secret_or_prompt_in_any_line(log_output: io.StringIO) -> None:
    log = logging.getLogger("llm_gateway.providers.test")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}], "api_key": OPENAI_KEY}
    log.warning("upstream rejected %s", body)
    log.warning("upstream said %s", orjson.dumps({"messages": [{"content": [{"type": "text", "text": PROMPT}]}]}))
    log.warning("headers: Authorization: Bearer %s x-api-key=%s", GATEWAY_KEY, OPENAI_KEY)
    log.info("caller token %s", JWT, extra={"detail": {"prompt": PROMPT, "authorization": f"Bearer {JWT}"}})
    try:
        raise ValueError(f"bad request {body}")
    except ValueError:
        log.exception("failed")
    output = log_output.getvalue()
    for secret in SECRETS:
        assert secret not in output
    assert all(MASK in line["msg"] or "exc" in line for line in lines(log_output))  # type: ignore[operator]


def test_text_format_is_redacted_too() -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    from llm_gateway.telemetry.logs import RequestLog, TextFormatter

    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("test.telemetry.text")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    RequestLog(logger).write(record())
    logger.info("key %s and prompt %s", OPENAI_KEY, orjson.dumps({"content": PROMPT}).decode())
    output = buffer.getvalue()
    assert "request_id=req-1 route=/v1/chat/completions user_id=user-42" in output
    assert "total_ms=501.2" in output
    for secret in SECRETS:
        assert secret not in output


def test_redact_masks_credentials_and_contents_but_keeps_counts() -> None:
    assert redact(f"Authorization: Bearer {GATEWAY_KEY}") == f"Authorization: {MASK}"
    assert redact(f"key {OPENAI_KEY}!") == f"key {MASK}!"
    assert redact(f"jwt={JWT}") == f"jwt={MASK}"
    assert redact("password=hunter2 token: abc123") == f"password={MASK} token: {MASK}"
    assert redact('{"api_key": "abc123", "token": 5}') == f'{{"api_key": "{MASK}", "token": 5}}'
    assert redact(f'{{"role": "user", "content": "{PROMPT}"}}') == f'{{"role": "user", "content": "{MASK}"}}'
    assert redact(f"{{'content': '{PROMPT}'}}") == f"{{'content': \"{MASK}\"}}"
    kept = '{"prompt_tokens": 11, "completion_tokens": 7, "max_tokens": 50, "model": "gpt-4o-mini"}'
    assert redact(kept) == kept


def test_nothing_is_written_when_info_is_off(log_output: io.StringIO) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    Telemetry.create(TelemetrySettings(), {}).record(record())
    assert log_output.getvalue() == ""

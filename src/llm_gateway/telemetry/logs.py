"""Logging set-up (``LOG_LEVEL``, ``LOG_FORMAT=json|text``), the per-request line, and a redaction guard.

The request line is built from an allow-list of record fields, so a prompt, an answer or a
credential cannot reach it. The guard is the second line of defence for every other log line
(error paths, third-party libraries): both formatters pass every free text through ``redact``,
which masks bearer tokens, API keys, JWTs, ``key=value`` secrets and JSON ``content`` strings.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import IO, Any, Literal

import orjson

from llm_gateway.telemetry.genai import error_kind
from llm_gateway.telemetry.record import RequestRecord

LogFormat = Literal["json", "text"]
REQUEST_LOGGER = "llm_gateway.request"
MASK = "[REDACTED]"

_SECRETS = re.compile(
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"  # Authorization: Bearer ...
    r"|\b(?:sk|pk|rk|gsk|xai)[-_][A-Za-z0-9_-]{8,}"  # OpenAI/Anthropic/Groq/Helicone-style keys
    r"|\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"  # JWTs
)
# ``key: value`` / ``key=value`` secrets; a JSON literal (number, true, null) is left alone to keep JSON valid.
_KEY_VALUES = re.compile(
    r"(?i)(\b(?:api[_-]?key|x-api-key|authorization|password|passwd|secret|client_secret|access_token"
    r"|refresh_token|id_token|token|credentials?)[\"']?\s*[:=]\s*[\"']?)"
    r"(?!(?:null|true|false|-?\d+(?:\.\d+)?)\b)[^\s\"',;}]+"
)
# JSON (double quotes) and Python repr (single quotes) string values of content-bearing keys.
_CONTENT = re.compile(
    r"([\"'](?:content|prompt|input|text|arguments|system)[\"']\s*:\s*)"
    r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
)
# Standard LogRecord attributes, and uvicorn's ANSI-coloured copy of its message: not extras to print.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"color_message"}
_MEMO_SIZE = 4096
_MEMO_MAX_LENGTH = 200
_memo: dict[str, str] = {}


def redact(text: str) -> str:
    """Mask credentials and message contents in a log text.

    Short texts (messages, user ids, model names) repeat from request to request, so their
    results are memoised in a bounded dict: the regular expressions run once per distinct value.
    """
    if len(text) > _MEMO_MAX_LENGTH:
        return _redact(text)
    cached = _memo.get(text)
    if cached is None:
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()
        cached = _memo[text] = _redact(text)
    return cached


def _redact(text: str) -> str:
    text = _SECRETS.sub(MASK, text)
    text = _KEY_VALUES.sub(lambda m: m.group(1) + MASK, text)
    return _CONTENT.sub(lambda m: m.group(1) + '"' + MASK + '"', text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception; every free text redacted.

    Redaction runs on the strings before encoding (an embedded JSON document is escaped afterwards,
    which would hide it from the patterns, and a masked value must not break the line's JSON).
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)  # built by request_fields(): allow-listed, its free-text values already redacted
        else:
            for name, value in record.__dict__.items():
                if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                    line[name] = _clean(value)
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def _clean(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(value if isinstance(value, str) else orjson.dumps(value, default=str).decode())


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            text += " " + " ".join(f"{key}={_text(value)}" for key, value in fields.items() if value is not None)
        return redact(text)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value else orjson.dumps(value).decode()
    return orjson.dumps(value, default=str).decode()


def setup_logging(level: str = "INFO", fmt: LogFormat = "json", stream: IO[str] | None = None) -> logging.Handler:
    """Route every logger (uvicorn's included) to one redacting handler on stderr; returns it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # uvicorn writes access lines whenever "uvicorn.access" reaches a handler: kept silent, the gateway's
    # own request line is the one line per request.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    return handler


class RequestLog:
    """Writes the one structured line per request at INFO (nothing at all when INFO is off)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(REQUEST_LOGGER)

    def write(self, record: RequestRecord) -> None:
        """``logger.info("request", extra=...)`` minus the caller lookup (a walk up the stack per line, for a
        file and line number no formatter prints): the record is made and handed to the handlers directly."""
        logger = self._logger
        if logger.isEnabledFor(logging.INFO):
            line = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "request", (), None)
            line.fields = request_fields(record)
            logger.handle(line)


def request_fields(record: RequestRecord) -> dict[str, Any]:
    """The allow-listed fields of the request line. Never reads ``request_body``/``response_body``."""
    fields: dict[str, Any] = {
        "request_id": record.request_id,
        "route": record.route,
        "user_id": _redacted(record.user_id),
        "key_id": _redacted(record.key_id),
        "model": _redacted(record.model),
        "provider": record.provider,
        "upstream_model": record.upstream_model,
        "stream": record.stream,
        "cache": record.cache,
        "status": record.status,
        "error": _redacted(record.error),
        "attempts": [
            {
                "provider": attempt.provider,
                "model": attempt.model,
                "status": attempt.status,
                "error": None if attempt.error is None else error_kind(attempt.status, attempt.error),
                "ms": round(attempt.duration * 1000, 2),
            }
            for attempt in record.attempts
        ],
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_ms": round((record.duration or 0.0) * 1000, 2),
        "upstream_ms": round(record.upstream_seconds * 1000, 2),
    }
    if record.ttft is not None:
        fields["ttft_ms"] = round(record.ttft * 1000, 2)
    if record.finish_reasons:
        fields["finish_reasons"] = list(record.finish_reasons)
    return fields


def _redacted(value: str | None) -> str | None:
    """Caller-supplied strings (user id, model name) get the guard too: someone will paste a key there."""
    return redact(value) if value else value

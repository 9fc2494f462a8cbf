"""AWS Bedrock's Converse API wire (``POST /model/{modelId}/converse`` and ``/converse-stream``), as the fake speaks it.

Requests are authenticated as AWS does: a SigV4 signature recomputed with botocore for the request as received
(its raw path, its headers named in ``SignedHeaders``, its body, its ``X-Amz-Date``) with the fake's known test
credentials, or a Bedrock API key as ``Authorization: Bearer``; a failure is AWS's 403 (``UnrecognizedClientException``
for an unknown key or token, ``InvalidSignatureException`` for a wrong signature). Bodies are validated as Converse
does (``ValidationException``, 400). Answers are Converse JSON, and ConverseStream's AWS event-stream frames written
here (prelude, headers, CRCs) and checked in the selftests by botocore's own parser. Errors carry AWS's
``x-amzn-ErrorType`` header and ``{"message": ...}``.
"""

from __future__ import annotations

import datetime
import hmac
import json
import re
import struct
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from .behaviours import Reply
from .sse import StreamPlan, dumps, halves, split_text

JSON = dict[str, Any]
Problem = tuple[int, JSON]

REGION = "us-east-1"
ACCESS_KEY_ID = "AKIAFAKEBEDROCK00001"  # long-term keys: no session token
TEMP_ACCESS_KEY_ID = "ASIAFAKEBEDROCK00001"  # temporary keys (a role's): the session token is required
STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
_ERROR_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_ROUTE = re.compile(r"^/model/(?P<model>.+)/(?P<op>converse|converse-stream)$")
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
_MAX_SKEW = datetime.timedelta(minutes=5)

_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_DEFAULT_MESSAGES = {
    "ValidationException": "Malformed input request, please reformat your input and try again.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "The specified model was not found.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "InternalServerException": "The server encountered an internal error processing the request.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ModelTimeoutException": "Model has timed out in processing the request.",
    "ModelErrorException": "The model returned an error.",
    "UnrecognizedClientException": "The security token included in the request is invalid.",
    "InvalidSignatureException": (
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details."
    ),
}
_STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "content_filtered",
}
_TOP_LEVEL = {
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
    "promptVariables", "additionalModelResponseFieldPaths", "requestMetadata", "performanceConfig",
}  # fmt: skip
_BLOCK_KINDS = {
    "text", "image", "document", "video", "toolUse", "toolResult", "guardContent", "cachePoint", "reasoningContent",
}  # fmt: skip
_IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}
_MUST_START = (
    "A conversation must start with a user message. Try again with a conversation that starts with a user message."
)
_MUST_ALTERNATE = (
    "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between "
    "user and assistant roles and try again."
)
_INFERENCE = {"maxTokens", "temperature", "topP", "stopSequences"}


def session_token(api_key: str) -> str:
    """The session token the fake expects with ``TEMP_ACCESS_KEY_ID``."""
    return f"FQoGZXIvYXdzE{api_key}session"


def stop_reason(finish_reason: str) -> str:
    return _STOP_REASONS.get(finish_reason, finish_reason)


# ------------------------------------------------------------------------- event-stream frames


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total and headers lengths, CRC), string headers, payload, CRC."""
    encoded = b"".join(
        struct.pack(">B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode())) + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event_type: str, body: JSON) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, dumps({**body, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[: 4 + len(event_type)]}).encode())


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, dumps({"message": message}).encode())


class _ErrorBody(dict[str, Any]):
    """An error body (``{"message": ...}`` on the wire) that remembers its type for the ``x-amzn-ErrorType`` header."""

    error_type = "InternalServerException"


class BedrockWire:
    """The Bedrock side of a fake: SigV4 or bearer checks, Converse validation, answers, frames and errors."""

    kind = "bedrock"
    chat_path = "/model/{model}/converse"
    chat_routes = ("/model/{model:.+}/converse", "/model/{model:.+}/converse-stream")
    models_path = "/foundation-models"
    request_id_header = "x-amzn-RequestId"
    stream_error_status = 500
    stream_content_type = STREAM_CONTENT_TYPE

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key  # the Bedrock API key, and the secret access key of both test key ids
        self.credentials = {
            ACCESS_KEY_ID: ReadOnlyCredentials(ACCESS_KEY_ID, api_key, None),
            TEMP_ACCESS_KEY_ID: ReadOnlyCredentials(TEMP_ACCESS_KEY_ID, api_key, session_token(api_key)),
        }
        self.raw_paths: list[str] = []  # every chat request's path as sent (percent-encoded)

    # -- routing --------------------------------------------------------------------------------

    def is_chat(self, path: str) -> bool:
        return _ROUTE.match(path) is not None

    def request_view(self, method: str, path: str, query: Mapping[str, str], body: JSON) -> JSON:
        """The body with the model and ``stream`` read from the URL (``__keys__``: the keys as sent)."""
        match = _ROUTE.match(path)
        model = match["model"] if match else ""
        return {
            **body,
            "__keys__": list(body),
            "model": model,
            "stream": bool(match and match["op"] == "converse-stream"),
        }

    # -- errors ---------------------------------------------------------------------------------

    def error(
        self, status: int, message: str | None = None, error_type: str | None = None, code: str | None = None
    ) -> JSON:
        kind = error_type or _ERROR_TYPES.get(
            status, "InternalServerException" if status >= 500 else "ValidationException"
        )
        body = _ErrorBody(message=message or _DEFAULT_MESSAGES.get(kind, f"Upstream error {status}"))
        body.error_type = kind
        return body

    def error_headers(self, status: int, body: Any) -> dict[str, str]:
        kind = getattr(body, "error_type", None) or _ERROR_TYPES.get(status, "InternalServerException")
        return {"x-amzn-ErrorType": f"{kind}{_ERROR_SUFFIX}"}

    def stream_error(self, message: str | None, error_type: str | None) -> bytes:
        return exception_frame(
            error_type or "modelStreamErrorException", message or "The model stream was interrupted."
        )

    def not_found(self, method: str, path: str) -> Problem:
        return 404, self.error(404, "Not Found", "UnknownOperationException")

    # -- authentication -------------------------------------------------------------------------

    def check_auth(self, headers: Mapping[str, str]) -> Problem | None:
        """For the non-chat routes: a bearer key, or a SigV4 header (not recomputed there)."""
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            return self._bearer(authorization[7:])
        if authorization.startswith("AWS4-HMAC-SHA256 "):
            return None
        return 403, self.error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")

    def authenticate(self, method: str, path_qs: str, headers: Mapping[str, str], raw: bytes) -> Problem | None:
        """SigV4 recomputed with botocore for the request as received, or the Bedrock API key."""
        if _ROUTE.match(unquote(path_qs.partition("?")[0])):
            self.raw_paths.append(path_qs)
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            return self._bearer(authorization[7:])
        match = _AUTHORIZATION.match(authorization)
        if match is None:
            kind = "IncompleteSignatureException" if authorization else "MissingAuthenticationTokenException"
            return 403, self.error(403, "Authorization header requires a valid SigV4 signature", kind)
        credentials = self.credentials.get(match["key"])
        if credentials is None or headers.get("X-Amz-Security-Token") != credentials.token:
            return 403, self.error(403, None, "UnrecognizedClientException")
        return self._signature_problem(method, path_qs, headers, raw, match, credentials)

    def _bearer(self, key: str) -> Problem | None:
        if hmac.compare_digest(key.encode(), self.api_key.encode()):
            return None
        return 403, self.error(
            403, "Invalid API Key format: Must start with pre-defined prefix", "UnrecognizedClientException"
        )

    def _signature_problem(
        self,
        method: str,
        path_qs: str,
        headers: Mapping[str, str],
        raw: bytes,
        match: re.Match[str],
        credentials: ReadOnlyCredentials,
    ) -> Problem | None:
        amz_date = headers.get("X-Amz-Date", "")
        signed_names = match["signed"].split(";")
        if "host" not in signed_names or "x-amz-date" not in signed_names or not amz_date.startswith(match["date"]):
            return 403, self.error(403, "Signature is missing the host or date headers", "IncompleteSignatureException")
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            return 403, self.error(403, "X-Amz-Date is not a date", "IncompleteSignatureException")
        if abs(datetime.datetime.now(datetime.UTC) - when) > _MAX_SKEW:
            return 403, self.error(
                403, f"Signature expired: {amz_date} is now earlier than allowed", "InvalidSignatureException"
            )
        if match["service"] != "bedrock" or match["region"] != REGION:
            scope = f"{match['region']}/{match['service']}"
            message = f"Credential should be scoped to a valid region and to the service 'bedrock', not {scope}"
            return 403, self.error(403, message, "InvalidSignatureException")
        signed = {name: headers.get(name, "") for name in signed_names}
        request = AWSRequest(method=method, url=f"http://{headers.get('Host', '')}{path_qs}", headers=signed, data=raw)
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(credentials, "bedrock", match["region"])
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, match["signature"]):
            return 403, self.error(403, None, "InvalidSignatureException")
        return None

    # -- request checks -------------------------------------------------------------------------

    def check_request(self, body: Any, headers: Mapping[str, str]) -> Problem | None:
        if not isinstance(body, dict):
            return 400, self.error(400, "Malformed input request: the body is not a JSON object")
        if not headers.get("Content-Type", "").startswith("application/json"):
            return 400, self.error(400, "Content-Type must be application/json")
        message = _body_problem(body)
        return (400, self.error(400, message)) if message else None

    # -- answers --------------------------------------------------------------------------------

    def models(self) -> JSON:
        return {"modelSummaries": [{"modelId": "anthropic.claude-3-5-haiku-20241022-v1:0"}]}

    def completion(self, request: JSON, reply: Reply) -> JSON:
        content: list[JSON] = []
        if reply.thinking is not None:
            content.append({"reasoningContent": {"reasoningText": {"text": reply.thinking, "signature": "c2ln"}}})
        text = reply.text(self.kind)
        content += [{"text": text}] if text else []
        for call in reply.tool_calls or []:
            function = call.get("function", {})
            tool_input = json.loads(function.get("arguments") or "{}")
            content.append(
                {"toolUse": {"toolUseId": call.get("id"), "name": function.get("name"), "input": tool_input}}
            )
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason(reply.finish()),
            "usage": _usage(reply),
            "metrics": {"latencyMs": 42},
        }

    def stream(self, request: JSON, reply: Reply) -> StreamPlan:
        head = [event_frame("messageStart", {"role": "assistant"})]
        chunks: list[list[bytes]] = []
        index = 0
        if reply.thinking is not None:
            for piece in split_text(reply.thinking, None):
                chunks.append([_delta(index, {"reasoningContent": {"text": piece}})])
            chunks[-1] += [_delta(index, {"reasoningContent": {"signature": "c2ln"}}), _stop(index)]
            index += 1
        text = reply.text(self.kind)
        if text:
            chunks += [[_delta(index, {"text": piece})] for piece in split_text(text, reply.chunks)]
            chunks[-1].append(_stop(index))
            index += 1
        for call in reply.tool_calls or []:
            function = call.get("function", {})
            start = {"toolUse": {"toolUseId": call.get("id"), "name": function.get("name")}}
            pieces = halves(function.get("arguments", "")) or [""]
            calls = [[_delta(index, {"toolUse": {"input": piece}})] for piece in pieces]
            calls[0].insert(0, event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            calls[-1].append(_stop(index))
            chunks += calls
            index += 1
        tail = [
            event_frame("messageStop", {"stopReason": stop_reason(reply.finish())}),
            event_frame("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": 42}}),
        ]
        return StreamPlan(head=head, chunks=chunks, tail=tail)


def _delta(index: int, delta: JSON) -> bytes:
    return event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})


def _stop(index: int) -> bytes:
    return event_frame("contentBlockStop", {"contentBlockIndex": index})


def _usage(reply: Reply) -> JSON:
    usage = {
        "inputTokens": reply.prompt_tokens,
        "outputTokens": reply.completion_tokens,
        "totalTokens": reply.prompt_tokens
        + reply.completion_tokens
        + reply.cache_read_tokens
        + reply.cache_creation_tokens,
    }
    if reply.cache_read_tokens or reply.cache_creation_tokens:
        usage |= {"cacheReadInputTokens": reply.cache_read_tokens, "cacheWriteInputTokens": reply.cache_creation_tokens}
    return usage


# ---------------------------------------------------------------------------- validation (as Converse)


def _body_problem(body: JSON) -> str | None:
    sent = body.get("__keys__", list(body))
    extra = sorted(set(sent) - _TOP_LEVEL)
    if extra:
        return f"Malformed input request: extraneous key [{extra[0]}] is not permitted, please reformat your input"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "The messages field is required and must contain at least one message."
    return (
        _messages_problem(messages)
        or _system_problem(body.get("system"))
        or _inference_problem(body.get("inferenceConfig"))
        or _tools_problem(body.get("toolConfig"), messages)
    )


def _messages_problem(messages: list[Any]) -> str | None:
    previous = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            return f"messages.{i}: a message has exactly a role and a content"
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            return (
                f"1 validation error detected: Value '{role}' at 'messages.{i + 1}.member.role' failed to satisfy "
                "constraint: Member must satisfy enum value set: [user, assistant]"
            )
        if i == 0 and role != "user":
            return _MUST_START
        if role == previous:
            return _MUST_ALTERNATE
        previous = role
        if not isinstance(content, list) or not content:
            return f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock object."
        for j, block in enumerate(content):
            problem = _block_problem(block, f"messages.{i}.content.{j}")
            if problem:
                return problem
    return None


def _block_problem(block: Any, where: str) -> str | None:
    if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCK_KINDS:
        return f"The ContentBlock object at {where} must set exactly one of its fields."
    kind, value = next(iter(block.items()))
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            return f"The text field in the ContentBlock object at {where} is blank. Add text to the text field."
    elif kind == "image":
        source = value.get("source") if isinstance(value, dict) else None
        if not isinstance(value, dict) or value.get("format") not in _IMAGE_FORMATS or not isinstance(source, dict):
            return f"The image at {where} needs a format (png, jpeg, gif, webp) and a source."
        if "bytes" in source and not _is_base64(source["bytes"]):
            return f"Invalid base64 in the image bytes at {where}."
        if "bytes" not in source and not str(source.get("s3Location", {}).get("uri", "")).startswith("s3://"):
            return f"The image source at {where} needs bytes or an s3Location."
    elif kind == "toolUse":
        if not isinstance(value, dict) or not all(k in value for k in ("toolUseId", "name", "input")):
            return f"The toolUse at {where} needs toolUseId, name and input."
        if not isinstance(value["input"], dict):
            return f"The toolUse input at {where} must be a JSON object."
    elif kind == "toolResult":
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("toolUseId"), str)
            or not isinstance(value.get("content"), list)
        ):
            return f"The toolResult at {where} needs toolUseId and content."
    return None


def _is_base64(value: Any) -> bool:
    import base64
    import binascii

    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        return False
    return True


def _system_problem(system: Any) -> str | None:
    if system is None:
        return None
    if not isinstance(system, list):
        return "The system field must be a list of SystemContentBlock objects."
    for i, block in enumerate(system):
        if (
            not isinstance(block, dict)
            or len(block) != 1
            or next(iter(block)) not in ("text", "cachePoint", "guardContent")
        ):
            return (
                f"The SystemContentBlock object at system.{i} must set exactly one of text, cachePoint, guardContent."
            )
        if "text" in block and (not isinstance(block["text"], str) or not block["text"].strip()):
            return f"The text field in the SystemContentBlock object at system.{i} is blank."
    return None


def _inference_problem(config: Any) -> str | None:
    if config is None:
        return None
    if not isinstance(config, dict) or set(config) - _INFERENCE:
        return "Malformed inferenceConfig: it takes maxTokens, temperature, topP and stopSequences."
    max_tokens = config.get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        return "The maximum tokens you requested must be at least 1."
    for name in ("temperature", "topP"):
        value = config.get(name)
        if value is not None and (not isinstance(value, int | float) or not 0 <= value <= 1):
            return (
                f"1 validation error detected: Value at 'inferenceConfig.{name}' failed to satisfy constraint: "
                "Member must have value less than or equal to 1"
            )
    return None


def _tools_problem(tool_config: Any, messages: list[Any]) -> str | None:
    uses_tools = any(
        isinstance(block, dict) and ("toolUse" in block or "toolResult" in block)
        for message in messages
        for block in message["content"]
    )
    if tool_config is None:
        return (
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
            if uses_tools
            else None
        )
    tools = tool_config.get("tools") if isinstance(tool_config, dict) else None
    if not isinstance(tools, list) or not tools:
        return "The toolConfig.tools field must hold at least one tool."
    names = set()
    for i, tool in enumerate(tools):
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        schema = spec.get("inputSchema") if isinstance(spec, dict) else None
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("name"), str)
            or not isinstance(schema, dict)
            or not isinstance(schema.get("json"), dict)
        ):
            return f"The tool at toolConfig.tools.{i} needs a toolSpec with a name and an inputSchema.json."
        names.add(spec["name"])
    choice = tool_config.get("toolChoice")
    if choice is not None:
        if not isinstance(choice, dict) or len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
            return "The toolChoice must set exactly one of auto, any, tool."
        if "tool" in choice and choice["tool"].get("name") not in names:
            return "The tool named in toolChoice is not in toolConfig.tools."
    return None

"""Every error the gateway can answer with, and how each renders as OpenAI's envelope.

One tree, one handler (``app.py``). Each class knows its HTTP status, OpenAI's
``type``/``code`` and whether a fallback to the next deployment may cure it::

    GatewayError                      500 api_error
    ├── InternalError                 500 internal_error        (a bug: never the caller's fault)
    ├── InvalidRequest                400 invalid_request_error
    │   ├── RequestTooLarge           413
    │   ├── UnsupportedMediaType      415 unsupported_media_type
    │   ├── UnsupportedFeature        400 unsupported_feature   (a deployment skipped; none left)
    │   │   └── ModelNotSupported     400 model_not_supported   (no deployment offers the API at all)
    │   └── ModelNotFound             404 model_not_found
    ├── AuthenticationFailed          401 invalid_api_key
    ├── PermissionDenied              403 model_not_allowed
    ├── RateLimited                   429 rate_limit_exceeded   (Retry-After)
    │   └── QuotaExceeded             429 insufficient_quota    (Retry-After)
    ├── ServiceUnavailable            503 (a dependency of the gateway itself is down)
    ├── NoProviderConfigured          503 no_provider_configured (no provider of the group has a key)
    ├── FrameworkError                the web framework's own 404/405/... in the same envelope
    └── UpstreamError                 an LLM provider failed; `retryable` drives fallback
        ├── ProviderRejected          the provider answered with an error status
        ├── ProviderUnreachable       connect error, dropped connection
        ├── ProviderProtocolError     an answer that is not what the wire format promises
        ├── ProviderTimeout           504 no first byte / no chunk within the attempt timeout
        ├── UpstreamStreamError       the provider failed after the stream had started
        │   └── ReservationExceeded   (pipeline/meter.py) it wrote past the completion tokens reserved
        └── AllProvidersFailed        502 every deployment of the group failed
            └── AllProvidersRefused   429 rate_limit_exceeded   every one refused for rate or overload
                                          (429/529); Retry-After: the smallest upstream one
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str | None] = None
    retryable: bool = False

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.context_headers: dict[str, str] = {}

    @property
    def status_code(self) -> int:
        return self.status

    def headers(self) -> dict[str, str]:
        return dict(self.context_headers)

    def add_headers(self, headers: Mapping[str, str]) -> None:
        """Headers the failing step knows and the answer must carry (the caller's ``x-ratelimit-*``)."""
        self.context_headers.update(headers)

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return orjson.dumps(self.envelope())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class RequestTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class UnsupportedMediaType(InvalidRequest):
    """415: a body that does not say it is JSON (a browser could post it cross-origin without a preflight)."""

    status = 415
    code = "unsupported_media_type"


class ModelNotFound(InvalidRequest):
    status = 404
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist or you do not have access to it.", param="model")


class UnsupportedFeature(InvalidRequest):
    """A deployment cannot carry something the request needs (a server tool on an OpenAI-compatible
    deployment, a document block, ``n`` past a provider's limit): the router skips that deployment,
    without counting a failure against it; when none is left, this 400 goes to the caller, naming it."""

    code = "unsupported_feature"

    def __init__(self, feature: str, *, provider: str = "", param: str | None = None) -> None:
        where = f" by provider '{provider}'" if provider else ""
        super().__init__(f"{feature} is not supported{where} for this model.", param=param)
        self.feature = feature
        self.provider = provider


class ModelNotSupported(UnsupportedFeature):
    """400: the model group has no deployment that offers this API at all (embeddings on a chat-only chain)."""

    code = "model_not_supported"

    def __init__(self, api: str, *, provider: str = "") -> None:
        super().__init__(f"The {api} API", provider=provider, param="model")


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, retry_after_seconds)

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "retry-after": str(self.retry_after_seconds)}


class QuotaExceeded(RateLimited):
    type = "insufficient_quota"
    code = "insufficient_quota"


class InternalError(GatewayError):
    """What a caller sees of an unexpected exception: never its message, which may hold anything."""

    code = "internal_error"

    def __init__(self, message: str = "The gateway failed to handle the request.") -> None:
        super().__init__(message)


class ServiceUnavailable(GatewayError):
    status = 503
    code = "service_unavailable"


class NoProviderConfigured(GatewayError):
    """503: the model group exists, but none of its providers has an API key; the message names what to set.

    Not ``ModelNotFound``: a newcomer who has not set a key yet must be told so, not that the model does not exist.
    """

    status = 503
    code = "no_provider_configured"

    def __init__(self, model: str, settings_to_set: Sequence[str]) -> None:
        super().__init__(
            f"No provider of the model '{model}' has an API key: set {_either(settings_to_set)}.", param="model"
        )


def _either(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


class FrameworkError(GatewayError):
    type = "invalid_request_error"
    _CODES: ClassVar[dict[int, str]] = {404: "not_found", 405: "method_not_allowed"}

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self._status = status

    @property
    def status_code(self) -> int:
        return self._status

    def envelope(self) -> dict[str, Any]:
        envelope = super().envelope()
        envelope["error"]["code"] = self._CODES.get(self._status)
        return envelope


class UpstreamError(GatewayError):
    """A provider attempt failed. ``provider`` names the deployment, never its key."""

    status = 502
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        upstream_status: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.upstream_status = upstream_status
        # The upstream's own ``Retry-After`` (or ``retry-after-ms``) on a refusal, in seconds.
        self.retry_after_seconds = retry_after_seconds


# Statuses after which another deployment may well succeed. Upstream 401/403 mean
# *our* provider key is broken, not the caller's credentials, so they fall back too.
RETRYABLE_STATUSES = frozenset({401, 403, 408, 409, 429, 529})


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUSES


class ProviderRejected(UpstreamError):
    """The provider answered with an error status; 4xx ones go back to the caller as they are."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        upstream_status: int,
        error_type: str | None = None,
        error_code: str | None = None,
        param: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, upstream_status=upstream_status, retry_after_seconds=retry_after_seconds
        )
        self.retryable = is_retryable_status(upstream_status)
        self.param = param
        self._type = error_type
        self._code = error_code

    @property
    def status_code(self) -> int:
        # A non-retryable rejection is the caller's fault (bad field, context too long):
        # pass its status through. Retryable ones never reach the caller alone.
        return self.upstream_status if self.upstream_status and not self.retryable else 502

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self._type or ("invalid_request_error" if not self.retryable else "api_error"),
                "param": self.param,
                "code": self._code,
            }
        }


class ProviderUnreachable(UpstreamError):
    retryable = True
    code = "upstream_unreachable"


class ProviderProtocolError(UpstreamError):
    retryable = True
    code = "upstream_bad_response"


class ProviderTimeout(UpstreamError):
    status = 504
    retryable = True
    code = "upstream_timeout"


class UpstreamStreamError(UpstreamError):
    """The upstream stream failed: an error event, or the connection ended before the answer did.

    Before the first byte reached the client another deployment may still answer (so it is
    retryable); after it, the gateway ends the client's stream with an error event.
    """

    retryable = True
    code = "upstream_stream_error"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call to one deployment: its status (None: no HTTP answer), error code ("" when it answered),
    when it ran (``time.perf_counter()`` start and duration in seconds) and, for a refusal, the
    upstream's ``Retry-After`` in seconds (None when it sent none)."""

    provider: str
    model: str
    status: int | None
    error: str
    start: float = 0.0
    duration: float = 0.0
    retry_after: float | None = None

    def public(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "status": self.status, "error": self.error}


class AllProvidersFailed(UpstreamError):
    """502 (504 when the request's deadline ran out): no deployment of ``group`` answered.

    Build it with ``all_providers_failed``, which picks ``AllProvidersRefused`` when that rule holds.
    """

    code = "all_providers_failed"
    headline: ClassVar[str] = "All providers failed for model '{group}'"

    def __init__(self, group: str, attempts: list[Attempt], *, timed_out: bool = False) -> None:
        attempts = list(attempts)
        summary = "; ".join(f"{a.provider}: {a.status if a.status is not None else a.error}" for a in attempts)
        if not attempts:
            summary = "no deployment has a configured provider"
        super().__init__(f"{self.headline.format(group=group)}: {summary}")
        self.attempts = attempts
        self.timed_out = timed_out

    @property
    def status_code(self) -> int:
        return 504 if self.timed_out else 502

    def envelope(self) -> dict[str, Any]:
        envelope = super().envelope()
        envelope["error"]["attempts"] = [a.public() for a in self.attempts]
        return envelope


# Upstream statuses that refuse for rate (429) or overload (Anthropic's 529): the provider will
# answer again later, on its own schedule.
REFUSAL_STATUSES = frozenset({429, 529})


class AllProvidersRefused(AllProvidersFailed):
    """429: every attempt was refused for rate or overload, so the caller should back off, not report an outage.

    ``retry_after_seconds`` is the smallest ``Retry-After`` among the refusals that carried one, in whole
    seconds (rounded up, at least 1), or None when none did: then no ``Retry-After`` is sent, rather than a
    schedule the gateway would invent, and clients back off on their own. ``overloaded``: some attempt was
    a 529 (the Anthropic route answers 529 ``overloaded_error`` then).
    """

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    headline = "Every provider refused model '{group}' for rate or overload"

    def __init__(self, group: str, attempts: list[Attempt]) -> None:
        super().__init__(group, attempts)
        waits = [a.retry_after for a in attempts if a.retry_after is not None and 0 <= a.retry_after < math.inf]
        self.retry_after_seconds = max(1, math.ceil(min(waits))) if waits else None

    @property
    def status_code(self) -> int:
        return 429

    @property
    def overloaded(self) -> bool:
        return any(a.status == 529 for a in self.attempts)

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.retry_after_seconds is not None:
            headers["retry-after"] = str(int(self.retry_after_seconds))
        return headers


def all_providers_failed(group: str, attempts: Sequence[Attempt]) -> AllProvidersFailed:
    """The error for a chain that ran out (not out of time): a 429 when every attempt was refused for rate
    or overload (DESIGN.md, Fallback), else 502 with the attempts."""
    attempts = list(attempts)
    if attempts and all(a.status in REFUSAL_STATUSES for a in attempts):
        return AllProvidersRefused(group, attempts)
    return AllProvidersFailed(group, attempts)

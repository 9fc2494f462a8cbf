"""Every exception the transport can raise maps onto the gateway's UpstreamError tree, and nothing else does.

As httpx's tests/test_exceptions.py: a new class in ``llm_gateway.http.errors`` without a mapping fails here.
"""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from llm_gateway import http
from llm_gateway.errors import (
    ProviderProtocolError,
    ProviderTimeout,
    ProviderUnreachable,
    UpstreamError,
    UpstreamStreamError,
)
from llm_gateway.http import errors
from llm_gateway.providers.adapter import SecretMask, map_transport_errors, retry_after_seconds

# (plain request, inside a started stream)
EXPECTED: dict[type[errors.TransportError], tuple[type[UpstreamError], type[UpstreamError]]] = {
    errors.ConnectTimeout: (ProviderTimeout, ProviderTimeout),
    errors.ReadTimeout: (ProviderTimeout, ProviderTimeout),
    errors.ConnectError: (ProviderUnreachable, ProviderUnreachable),
    errors.ReadError: (ProviderUnreachable, ProviderUnreachable),
    errors.BodyCut: (ProviderUnreachable, ProviderUnreachable),
    errors.RemoteProtocolError: (ProviderProtocolError, UpstreamStreamError),
    errors.ResponseTooLarge: (ProviderProtocolError, UpstreamStreamError),
}


def leaves(root: type[errors.TransportError]) -> set[type[errors.TransportError]]:
    found = set()
    for sub in root.__subclasses__():
        found |= {sub} | leaves(sub)
    return found


def test_every_transport_exception_has_an_expected_mapping() -> None:
    assert leaves(errors.TransportError) - {errors.TimeoutException, errors.NetworkError} == set(EXPECTED)
    assert {name for name in http.__all__ if name[0].isupper() and hasattr(errors, name)} >= {
        cls.__name__ for cls in EXPECTED
    }


@pytest.mark.parametrize("stream", [False, True], ids=["request", "stream"])
@pytest.mark.parametrize("error", list(EXPECTED), ids=lambda cls: cls.__name__)
def test_transport_errors_map_to_retryable_upstream_errors(error: type[errors.TransportError], stream: bool) -> None:
    with pytest.raises(UpstreamError) as caught, map_transport_errors("groq", stream=stream):
        raise error("a lower message with sk-secret in it")
    assert type(caught.value) is EXPECTED[error][stream]
    assert caught.value.provider == "groq" and caught.value.retryable
    assert caught.value.__cause__ is None and "sk-secret" not in caught.value.message


def test_the_gateways_own_errors_pass_through_unchanged() -> None:
    original = ProviderTimeout("already mapped", provider="openai")
    with pytest.raises(ProviderTimeout) as caught, map_transport_errors("groq"):
        raise original
    assert caught.value is original


@pytest.mark.parametrize("error", [KeyError("a bug"), OSError("raw"), TimeoutError(), asyncio.CancelledError()])
def test_other_exceptions_are_not_disguised_as_upstream_failures(error: BaseException) -> None:
    """A bug is a bug; a raw OSError or TimeoutError cannot come from the transport (it wraps them), and the
    router's own deadline (``asyncio.timeout``) must stay a TimeoutError."""
    with pytest.raises(type(error)), map_transport_errors("groq"):
        raise error


def test_none_of_the_transport_errors_is_an_os_error() -> None:
    assert not issubclass(errors.TransportError, OSError | TimeoutError)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "7"}, 7.0),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "tomorrow"}, None),
        ({}, None),
    ],
)
def test_retry_after_in_seconds_or_milliseconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_as_an_http_date() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds({"retry-after": later})
    assert seconds is not None and 28 <= seconds <= 30
    assert retry_after_seconds({"retry-after": email.utils.formatdate(time.time() - 30, usegmt=True)}) == 0.0


def test_every_configured_secret_is_masked_longest_first() -> None:
    mask = SecretMask(["sk-abc", "", "org-123", "sk-abcdef"])
    assert mask("key sk-abcdef, org org-123, short sk-abc.") == "key ***, org ***, short ***."
    assert mask("nothing here") == "nothing here"

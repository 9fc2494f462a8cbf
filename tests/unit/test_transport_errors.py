"""Every exception the transport and the socket layer can raise maps onto the gateway's UpstreamError tree."""

from __future__ import annotations

import socket
import ssl

import pytest

from llm_gateway.errors import ProviderProtocolError, ProviderTimeout, ProviderUnreachable, UpstreamError
from llm_gateway.providers.http import map_transport_errors
from llm_gateway.providers.transport import BodyCut, InvalidResponse


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError(), ProviderTimeout),
        (BodyCut("cut"), ProviderUnreachable),
        (InvalidResponse("garbage"), ProviderProtocolError),
        (ConnectionRefusedError(), ProviderUnreachable),
        (ConnectionResetError(), ProviderUnreachable),
        (socket.gaierror(-2, "Name or service not known"), ProviderUnreachable),
        (ssl.SSLCertVerificationError("certificate verify failed"), ProviderUnreachable),
        (OSError("network unreachable"), ProviderUnreachable),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value.__name__,
)
def test_transport_errors_map_to_retryable_upstream_errors(error: BaseException, expected: type[UpstreamError]) -> None:
    with pytest.raises(UpstreamError) as caught, map_transport_errors("groq"):
        raise error
    assert type(caught.value) is expected
    assert caught.value.provider == "groq" and caught.value.retryable
    assert caught.value.__cause__ is None  # the lower library's message never reaches the caller


def test_the_gateways_own_errors_pass_through_unchanged() -> None:
    original = ProviderTimeout("already mapped", provider="openai")
    with pytest.raises(ProviderTimeout) as caught, map_transport_errors("groq"):
        raise original
    assert caught.value is original


def test_other_exceptions_are_not_disguised_as_upstream_failures() -> None:
    with pytest.raises(KeyError), map_transport_errors("groq"):
        raise KeyError("a bug in the gateway is a bug, not an unreachable provider")

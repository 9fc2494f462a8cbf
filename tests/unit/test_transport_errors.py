"""Every exception aiohttp can raise maps onto the gateway's UpstreamError tree (none escapes unmapped)."""

from __future__ import annotations

import inspect
from typing import Any

import aiohttp
import pytest

from llm_gateway.errors import ProviderTimeout, UpstreamError
from llm_gateway.providers.http import map_transport_errors


def aiohttp_client_errors() -> list[type[BaseException]]:
    return [
        obj for _, obj in inspect.getmembers(aiohttp) if inspect.isclass(obj) and issubclass(obj, aiohttp.ClientError)
    ]


def instantiate(kind: type[BaseException]) -> BaseException:
    """Build an instance whatever its constructor wants (aiohttp's signatures vary)."""
    for args in ((), ("message",), (None, ()), (None, None)):
        try:
            return kind(*args)
        except Exception:
            continue
    return kind.__new__(kind)


@pytest.mark.parametrize("kind", aiohttp_client_errors(), ids=lambda k: k.__name__)
def test_every_aiohttp_error_is_mapped(kind: type[BaseException]) -> None:
    with pytest.raises(UpstreamError) as caught, map_transport_errors("openai"):
        raise instantiate(kind)
    assert caught.value.provider == "openai"
    assert caught.value.retryable


@pytest.mark.parametrize("error", [TimeoutError(), aiohttp.ServerTimeoutError(), ConnectionResetError(), OSError()])
def test_timeouts_and_socket_errors(error: Any) -> None:
    with pytest.raises(UpstreamError) as caught, map_transport_errors("groq"):
        raise error
    if isinstance(error, TimeoutError):
        assert isinstance(caught.value, ProviderTimeout)


def test_there_are_errors_to_check() -> None:
    assert len(aiohttp_client_errors()) > 10

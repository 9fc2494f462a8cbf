"""The console's own headers and cookies: a strict Content-Security-Policy, and cookies ``Secure`` behind https.

The front door already adds ``nosniff``, ``X-Frame-Options: DENY``, ``no-referrer`` and ``no-store`` to every
answer (``api/middleware.py``); the console adds a policy that allows its own files only: no inline script or
style, no framing, forms posting nowhere else. Chart data travels in ``<script type="application/json">``
blocks, which are data, not script.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from llm_gateway.auth.client_ip import Network, anonymous_key, client_address, from_trusted_proxy

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    )
)
CONSOLE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
CONSOLE_PATH = "/ui"
SESSION_COOKIE = "llmgw_console"
# Before sign-in there is no session: the sign-in form's CSRF token is checked against this cookie instead.
SIGN_IN_COOKIE = "llmgw_console_signin"


def _peer_and_forwarded(request: Request, header: str) -> tuple[str | None, str | None]:
    return (request.client.host if request.client else None), request.headers.get(header)


def client_of(request: Request, proxies: Sequence[Network]) -> str:
    """The caller's address as the sign-in limit counts it (``X-Forwarded-For`` only from a trusted proxy)."""
    return anonymous_key(client_address(*_peer_and_forwarded(request, "x-forwarded-for"), proxies))


def is_https(request: Request, proxies: Sequence[Network]) -> bool:
    """Whether the browser reached us over https: directly, or through a trusted proxy that says so.

    Any ``https`` in the proxy's ``X-Forwarded-Proto`` counts: a client that forged it only makes its own
    cookie stricter."""
    if request.url.scheme == "https":
        return True
    peer, forwarded = _peer_and_forwarded(request, "x-forwarded-proto")
    if not forwarded or not from_trusted_proxy(peer, proxies):
        return False
    return any(part.strip().lower() == "https" for part in forwarded.split(","))


def set_cookie(response: Response, name: str, value: str, *, max_age: int, secure: bool) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=CONSOLE_PATH, secure=secure, httponly=True, samesite="strict"
    )


def clear_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path=CONSOLE_PATH, secure=secure, httponly=True, samesite="strict")


def secure_headers(response: Response) -> Response:
    response.headers.update(CONSOLE_HEADERS)
    return response

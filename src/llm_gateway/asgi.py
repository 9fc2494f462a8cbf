"""What the gateway's own ASGI layers read off a scope, shared by ``api/`` and ``telemetry/``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import Scope, Send

# The attribute a send wrapper sets on itself (``pass_body``) once it has no more to do with the response.
_BODY_SEND = "body_send"


def route_path(scope: Scope) -> str:
    """The path the routes match: ``scope["path"]`` less the ``root_path`` it starts with.

    Servers put the mount point in both (``uvicorn --root-path /gw``: path ``/gw/v1/models``), as the
    ASGI spec and Starlette's router expect; the router strips it the same way.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :] or "/"
    return path


def pass_body(wrapper: Send, inner: Send) -> None:
    """Say that the send wrapper ``wrapper`` has (or will have, once the start went out) nothing more to do with
    this response than hand each body message on to ``inner``: ``body_send`` then goes to ``inner`` directly.

    A closure that said so from inside itself would name itself: a reference cycle per request, garbage for the
    cyclic collector, whose pauses delay every stream. Say it from outside, or make the wrapper an object."""
    setattr(wrapper, _BODY_SEND, inner)


def body_send(send: Send) -> Send:
    """The ``send`` for the body of a response whose start went out: past every wrapper that said so
    (``pass_body``). A stream sends a body message per event, which each wrapper would await in turn."""
    while (inner := getattr(send, _BODY_SEND, None)) is not None:
        send = inner
    return send

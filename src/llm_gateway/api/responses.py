"""``POST /v1/responses`` (and ``/responses``), ``GET`` and ``DELETE /v1/responses/{id}``: OpenAI's Responses API,
for the OpenAI SDK's ``client.responses``, the Agents SDK and the tools built on them.

Conversation state lives in the gateway's own database (``store.conversations``), owned by the caller:
unless ``store`` is ``false``, a whole answer is kept before the caller sees it (so a follow-up sent the
moment it arrives finds it), a ``previous_response_id`` is loaded before anything is counted, and
another caller's id is answered exactly as an unknown one. Anonymous callers have no identity to own
a response: theirs are never kept. Errors are OpenAI's envelope; a stream that fails after
``response.created`` ends with ``response.failed``, one that fails before it with an ``error`` event.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.types import Scope

from llm_gateway.api.deps import CallerDep
from llm_gateway.api.endpoint import SurfaceEndpoint, documented_body, documented_errors
from llm_gateway.auth.identity import Identity
from llm_gateway.errors import GatewayError, InternalError, ServiceUnavailable
from llm_gateway.providers.base import NativeResponses
from llm_gateway.schemas.openai import ErrorEnvelope
from llm_gateway.schemas.responses import (
    DeletedResponse,
    PreviousResponseNotFound,
    ResponseNotFound,
    ResponseObject,
    ResponsesRequest,
    parse_responses_request,
)
from llm_gateway.schemas.sse_frames import frame, read_event, split_frame
from llm_gateway.store.conversations import ConversationStore
from llm_gateway.surfaces.responses import TERMINAL_EVENTS, ResponsesSurface
from llm_gateway.translate.responses_chat import input_items

log = logging.getLogger(__name__)

RESPONSES = ResponsesSurface()
RESPONSES_PATHS = frozenset({"/v1/responses", "/responses"})
_KEPT_STATUSES = frozenset({"completed", "incomplete"})

router = APIRouter()


@router.post(
    "/v1/responses",
    summary="Create a model response (OpenAI's Responses API)",
    openapi_extra=documented_body("CreateResponseRequest"),
    responses={
        200: {"model": ResponseObject, "content": {"text/event-stream": {}}},
        **documented_errors(ErrorEnvelope),
    },
)
@router.post("/responses", include_in_schema=False)
async def create_response() -> Response:
    """For /docs and /openapi.json only: ``GatewayApp`` dispatches these requests to ``ResponsesEndpoint``."""
    raise InternalError()


_LOOKUP_ERRORS = documented_errors(ErrorEnvelope, (401, 404, 503))


@router.get(
    "/v1/responses/{response_id}",
    summary="Retrieve a stored response (the caller's own)",
    responses={200: {"model": ResponseObject}, **_LOOKUP_ERRORS},
)
@router.get("/responses/{response_id}", include_in_schema=False)
async def retrieve_response(response_id: str, identity: CallerDep, request: Request) -> Response:
    stored = await _store(request).get(response_id, identity.user_id)
    if stored is None:
        raise ResponseNotFound(response_id)
    return Response(orjson.dumps(stored.response), media_type="application/json")


@router.delete(
    "/v1/responses/{response_id}",
    summary="Delete a stored response (the caller's own)",
    responses={200: {"model": DeletedResponse}, **_LOOKUP_ERRORS},
)
@router.delete("/responses/{response_id}", include_in_schema=False)
async def delete_response(response_id: str, identity: CallerDep, request: Request) -> Response:
    if not await _store(request).delete(response_id, identity.user_id):
        raise ResponseNotFound(response_id)
    return Response(orjson.dumps(DeletedResponse(id=response_id).model_dump()), media_type="application/json")


def _store(request: Request) -> ConversationStore:
    store: ConversationStore = request.app.state.conversations
    return store


class ResponsesEndpoint(SurfaceEndpoint[ResponsesRequest]):
    surface = RESPONSES

    def parse(self, body: bytes, headers: Headers, scope: Scope) -> ResponsesRequest:
        return parse_responses_request(body)

    def frame(self, item: bytes) -> bytes:
        return item  # the Responses surface's items arrive framed

    def error_event(self, exc: GatewayError) -> bytes:
        return error_event(exc, 0)

    async def admit(self, scope: Scope, headers: Headers, body: bytes) -> tuple[ResponsesRequest, Identity]:
        """As every surface, then the conversation a ``previous_response_id`` continues: the caller's own, or 400."""
        request, identity = await super().admit(scope, headers, body)
        if request.previous_response_id is not None:
            previous = None
            if not identity.anonymous:
                previous = await self.conversations.get(request.previous_response_id, identity.user_id)
            if previous is None:
                raise PreviousResponseNotFound(request.previous_response_id)
            request.previous = previous
        return request, identity

    @property
    def conversations(self) -> ConversationStore:
        store: ConversationStore = self.state.conversations
        return store

    async def answered(
        self, body: bytes, headers: dict[str, str], request: ResponsesRequest, identity: Identity
    ) -> None:
        if _kept(request, identity):
            response = orjson.loads(body)
            if isinstance(response, dict):
                await self._keep(response, headers, request, identity)

    def relayed(
        self, items: AsyncIterator[bytes], headers: dict[str, str], request: ResponsesRequest, identity: Identity
    ) -> AsyncIterator[bytes]:
        return self._watched(items, headers, request, identity)

    async def _watched(
        self, items: AsyncIterator[bytes], headers: dict[str, str], request: ResponsesRequest, identity: Identity
    ) -> AsyncGenerator[bytes, None]:
        """The stream as it goes: the whole response kept before its terminal event is sent, and a failure ended
        in the Responses API's own terms (``response.failed`` after ``response.created``, else ``error``)."""
        keep = _kept(request, identity)
        created: dict[str, Any] | None = None
        sequence = -1
        try:
            async for item in items:
                kind = split_frame(item)[0]
                if kind == "response.created" or kind in TERMINAL_EVENTS or created is None:
                    event = read_event(item)[1] or {}
                    sequence = _sequence(event, sequence)
                    if kind == "response.created":
                        created = event.get("response") if isinstance(event.get("response"), dict) else None
                    elif kind in TERMINAL_EVENTS and keep and isinstance(event.get("response"), dict):
                        await self._keep(event["response"], headers, request, identity)
                else:
                    sequence += 1  # OpenAI numbers every event; only the count matters here
                yield item
        except GatewayError as exc:
            yield failed_event(exc, created, sequence + 1) if created is not None else error_event(exc, sequence + 1)

    async def _keep(
        self, response: dict[str, Any], headers: dict[str, str], request: ResponsesRequest, identity: Identity
    ) -> None:
        """Keep a whole response for its owner. A store that fails costs the caller the follow-up, not the answer
        (it is paid for): the failure is logged, the answer still sent."""
        if response.get("status") not in _KEPT_STATUSES or not isinstance(response.get("id"), str):
            return
        provider = headers.get("x-gateway-provider", "")
        pipeline = self.state.pipeline
        native = bool(provider) and isinstance(pipeline.router.provider(provider), NativeResponses)
        try:
            await self.conversations.save(
                response,
                owner=identity.user_id,
                provider=provider,
                native=native,
                model_group=request.model,
                input_items=input_items(request.body),
                previous_id=request.previous.id if request.previous is not None else None,
            )
        except ServiceUnavailable as exc:
            log.warning("response %s not stored: %s", response["id"], exc.message)


def _kept(request: ResponsesRequest, identity: Identity) -> bool:
    return request.store and not identity.anonymous


def _sequence(event: dict[str, Any], previous: int) -> int:
    number = event.get("sequence_number")
    return number if isinstance(number, int) and not isinstance(number, bool) else previous + 1


def error_event(exc: GatewayError, sequence: int) -> bytes:
    """A stream's failure before any response existed: OpenAI's ``error`` event."""
    data = {"type": "error", "code": exc.code or exc.type, "message": exc.message, "param": exc.param}
    return frame("error", orjson.dumps({**data, "sequence_number": sequence}))


def failed_event(exc: GatewayError, response: dict[str, Any], sequence: int) -> bytes:
    """A stream's failure after ``response.created``: ``response.failed``, the response with its error."""
    failed = {**response, "status": "failed", "error": {"code": "server_error", "message": exc.message}}
    data = {"type": "response.failed", "sequence_number": sequence, "response": failed}
    return frame("response.failed", orjson.dumps(data))

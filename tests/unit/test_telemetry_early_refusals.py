"""Chat requests refused before the pipeline get one record; requests the pipeline recorded get no second."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm_gateway.telemetry import RequestRecord, Telemetry, TelemetrySettings
from llm_gateway.telemetry.early_refusals import UNKNOWN_MODEL, EarlyRefusalRecorder

ROUTE = "/v1/chat/completions"


class Capturing(Telemetry):
    records: list[RequestRecord]

    def record(self, record: RequestRecord) -> None:
        self.records.append(record)
        super().record(record)


async def test_only_requests_without_a_record_are_recorded_with_their_status_and_code() -> None:
    telemetry = Capturing.create(TelemetrySettings(), {})
    telemetry.records = []

    async def chat(request: Request) -> Response:
        request.scope.setdefault("state", {})["request_id"] = request.headers["x-request-id"]
        mode = request.query_params.get("mode")
        if mode == "refuse":
            envelope = {"error": {"message": "no", "type": "invalid_request_error", "code": "invalid_api_key"}}
            return JSONResponse(envelope, status_code=401)
        if mode == "crash":
            raise RuntimeError("bug")
        telemetry.record(RequestRecord.begin(request.headers["x-request-id"], ROUTE, "gpt-4o-mini", status=502))
        return JSONResponse({"error": {"code": "all_providers_failed"}}, status_code=502)

    app = Starlette(routes=[Route(ROUTE, chat, methods=["POST"]), Route("/other", chat, methods=["POST"])])
    telemetry.install(app, routes={ROUTE: ROUTE})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        for mode, request_id in (("refuse", "r-1"), ("crash", "r-2"), ("pipeline", "r-3")):
            await client.post(f"{ROUTE}?mode={mode}", headers={"x-request-id": request_id})
        await client.post("/other?mode=refuse", headers={"x-request-id": "r-4"})

    seen = [(r.request_id, r.model, r.status, r.error) for r in telemetry.records]
    assert seen == [
        ("r-1", UNKNOWN_MODEL, 401, "invalid_api_key"),
        ("r-2", UNKNOWN_MODEL, 500, "internal_error"),
        ("r-3", "gpt-4o-mini", 502, None),
    ]
    assert all(r.duration is not None and r.duration >= 0 for r in telemetry.records)


async def test_the_recorder_needs_only_a_callable_not_the_facade() -> None:
    """The recorder is handed where records go, so that it does not import ``facade`` (which imports it)."""
    records: list[RequestRecord] = []

    async def refuse(request: Request) -> Response:
        return JSONResponse({"error": {"message": "too big", "code": "request_too_large"}}, status_code=413)

    app = EarlyRefusalRecorder(
        Starlette(routes=[Route(ROUTE, refuse, methods=["POST"])]), record=records.append, routes={ROUTE: ROUTE}
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        await client.post(ROUTE)

    seen = [(r.route, r.model, r.status, r.error) for r in records]
    assert seen == [(ROUTE, UNKNOWN_MODEL, 413, "request_too_large")]

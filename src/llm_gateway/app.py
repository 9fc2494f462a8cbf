"""``create_app(config)``: wires settings, stores, identity, providers, router and routes into one ASGI app.

The lifespan opens every long-lived resource (the database, migrated to head; Redis when
configured; one pooled HTTP client per provider) and closes it at shutdown. It never waits for
PostgreSQL: the port is bound at once and the database reached in the background (``/ready``
says when). Nothing here runs at import time.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway import __version__, tokens
from llm_gateway.api import admin, chat, embeddings, health, messages, metrics, models, responses, usage
from llm_gateway.api.error_response import error_response
from llm_gateway.api.middleware import BodyGuardMiddleware, RequestIdMiddleware
from llm_gateway.asgi import route_path
from llm_gateway.auth.service import check_identity_settings, open_auth
from llm_gateway.cache import ErrorCallback, MemoryCache, RedisCache, ResponseCache
from llm_gateway.console import CONSOLE_PREFIX, attach_console, mount_console
from llm_gateway.errors import FrameworkError, GatewayError, InternalError, InvalidRequest, ServiceUnavailable
from llm_gateway.http import UpstreamBounds
from llm_gateway.limits import Admission, MemoryLimits, RedisLimits
from llm_gateway.pipeline import Pipeline
from llm_gateway.pricing_book import PriceBook
from llm_gateway.providers.base import Provider
from llm_gateway.providers.registry import build_providers
from llm_gateway.providers.router import Cooldowns, Router
from llm_gateway.readiness import Readiness, store_checks
from llm_gateway.schemas.anthropic_docs import CountTokensRequest
from llm_gateway.schemas.anthropic_docs import MessagesRequest as MessagesRequestDoc
from llm_gateway.schemas.embeddings import CreateEmbeddingRequest
from llm_gateway.schemas.openai import ChatCompletionRequest, Model, ModelList
from llm_gateway.schemas.responses import CreateResponseRequest
from llm_gateway.settings import GatewayConfig, Settings, api_key_setting, load_settings
from llm_gateway.store.conversations import ConversationStore
from llm_gateway.store.db import open_database
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.redis import PrefixedRedis, open_redis
from llm_gateway.store.resp import connect_pipelined
from llm_gateway.telemetry import Telemetry, TelemetrySettings, genai, setup_logging

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import SpanProcessor

log = logging.getLogger(__name__)

# The cyclic collector's first threshold in a serving process (CPython's default: 700). A collection's pause grows
# with the objects of the requests in flight (gen-1 ~10 ms, gen-2 ~20 ms with 400 streams open), and at 700 they
# came several times a second: the many-streams p99 was mostly collector pauses. The requests' objects die by
# reference counting (a test holds the relay's wrappers to no cycle), so the count of objects outliving a
# collection only wanders with the number in flight, and at 10,000 it stays below: the collector runs when live
# objects (or cyclic garbage) really grow by that much.
SERVING_GC_THRESHOLD = 10_000


def create_app(config: GatewayConfig, *, telemetry: Telemetry | None = None) -> FastAPI:
    """The gateway for ``config``; ``telemetry`` replaces ``build_telemetry(config)`` (tests: in-memory exporters)."""
    settings = config.settings
    check_identity_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            database = await stack.enter_async_context(
                open_database(settings.database_url.get_secret_value(), background=True)  # 503 until reached
            )
            redis = None
            if settings.redis_url is not None:
                redis = await stack.enter_async_context(
                    open_redis(settings.redis_url.get_secret_value(), settings.redis_prefix)
                )
            app.state.database, app.state.redis = database, redis
            attach_console(app, database)
            readiness = app.state.readiness = Readiness(store_checks(database, redis))
            stack.push_async_callback(readiness.aclose)
            app.state.auth = await stack.enter_async_context(open_auth(settings, database, redis))

            # Telemetry closes after the ledger: a slow collector must not hold up the flush of usage rows.
            telemetry = app.state.telemetry
            await telemetry.start()
            stack.push_async_callback(telemetry.aclose)
            ledger = UsageLedger(database)
            ledger.start()
            stack.push_async_callback(ledger.aclose)
            conversations = ConversationStore(database, ttl=timedelta(days=settings.responses_ttl_days))
            conversations.start()
            stack.push_async_callback(conversations.aclose)
            app.state.conversations = conversations
            limits = await stack.enter_async_context(_limits(settings, redis, ledger))
            cache = await stack.enter_async_context(_cache(settings, on_error=app.state.telemetry.metrics.cache_error))
            tokens.preload_in_background(tokens.encodings_for(config.models))  # the groups' encoders, off start-up

            providers = build_providers(
                config.providers,
                UpstreamBounds(
                    settings.max_response_bytes,
                    settings.max_sse_line_bytes,
                    settings.upstream_idle_seconds,
                    settings.upstream_max_idle_connections,
                ),
            )
            stack.push_async_callback(_close_providers, providers)
            if not providers:
                _hint_without_providers(config)
            router = Router(
                config.models,
                providers,
                await stack.enter_async_context(_cooldowns(settings, redis)),
                attempt_timeout=settings.upstream_timeout_seconds,
                request_timeout=settings.request_timeout_seconds,
                provider_types={name: provider.type for name, provider in config.providers.items()},
            )
            pipeline = Pipeline(
                router,
                limits,
                cache=cache,
                ledger=ledger,
                telemetry=telemetry,
                cache_scope=settings.cache_scope,
                completion_allowance=settings.default_completion_allowance,
                prices=PriceBook.from_config(config),  # every deployment priced once, here
            )
            # Closed first (callbacks run last-in first-out): streams still settling finish before
            # the ledger, the limits and the clients they use are closed.
            stack.push_async_callback(pipeline.drain)
            app.state.config = config
            app.state.pipeline, app.state.ledger, app.state.limits = pipeline, ledger, limits
            created = int(time.time())
            app.state.model_list = ModelList(
                data=[Model(id=name, created=created, owned_by="llm-gateway") for name in router.model_names]
            )
            log.info(
                "gateway ready: providers=%s models=%s source=%s", sorted(providers), router.model_names, config.source
            )
            # Everything built so far lives as long as the process: keep it out of every future
            # collection (a full collection over it took ~115 ms, stalling every request in flight).
            gc.collect()
            gc.freeze()
            yield

    app = GatewayApp(
        title="llm-gateway",
        version=__version__,
        lifespan=lifespan,
        description="An OpenAI-compatible LLM gateway.",
        # Starlette would answer `/v1/models/` with a redirect to an absolute URL built from the Host header.
        redirect_slashes=False,
    )
    for module in (chat, messages, embeddings, responses, models, usage, admin, health, metrics):
        app.include_router(module.router)
    console = mount_console(app, settings)  # /ui, when ADMIN_API_KEY is set
    telemetry = app.state.telemetry = telemetry or build_telemetry(config)
    _install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.entry = _front_door(app.dispatch, settings, telemetry, console=console)
    return app


def _front_door(dispatch: ASGIApp, settings: Settings, telemetry: Telemetry, *, console: bool = False) -> ASGIApp:
    """What every request passes through, chat and FastAPI's routes alike, outermost first: the server span
    (when tracing) and the record of a refused chat request; the request id and security headers; CORS (when
    configured); the admin key for ``/admin`` (refused before anything else is said about the request); the
    body's type and size (the console's forms may be urlencoded)."""
    form_prefix = CONSOLE_PREFIX if console else None
    entry: ASGIApp = BodyGuardMiddleware(dispatch, max_bytes=settings.max_request_bytes, form_prefix=form_prefix)
    entry = admin.AdminGuard(entry, admin_api_key=settings.admin_api_key)
    if settings.cors_origins:
        entry = CORSMiddleware(entry, **_cors_options(settings))
    entry = RequestIdMiddleware(entry)
    routes = {path: chat.CHAT.route for path in chat.CHAT_PATHS}
    routes |= {path: messages.MESSAGES.route for path in messages.MESSAGES_PATHS}
    routes |= {path: embeddings.EMBEDDINGS.route for path in embeddings.EMBEDDINGS_PATHS}
    routes |= {path: responses.RESPONSES.route for path in responses.RESPONSES_PATHS}
    return telemetry.wrap(entry, routes=routes)


class GatewayApp(FastAPI):
    """FastAPI behind the gateway's front door: ``entry`` (the shared middleware, built by ``create_app``)
    sees every request first and ends in ``dispatch``, which hands ``POST`` to the chat routes to the
    plain ASGI ``ChatEndpoint`` (the hot path) and everything else, lifespan included, to FastAPI."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.chat_endpoint: ASGIApp = chat.ChatEndpoint(self.state)
        self.messages_endpoint: ASGIApp = messages.MessagesEndpoint(self.state)
        self.embeddings_endpoint: ASGIApp = embeddings.EmbeddingsEndpoint(self.state)
        self.responses_endpoint: ASGIApp = responses.ResponsesEndpoint(self.state)
        self._endpoints: dict[str, ASGIApp] = {
            **dict.fromkeys(chat.CHAT_PATHS, self.chat_endpoint),
            **dict.fromkeys(messages.MESSAGES_PATHS, self.messages_endpoint),
            **dict.fromkeys(embeddings.EMBEDDINGS_PATHS, self.embeddings_endpoint),
            **dict.fromkeys(responses.RESPONSES_PATHS, self.responses_endpoint),
        }
        self.entry: ASGIApp = self.dispatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.entry(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = route_path(scope)
            endpoint = self._endpoints.get(path)
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _cors_options(settings: Settings) -> dict[str, Any]:
    return {
        "allow_origins": settings.cors_origins,
        "allow_methods": ["*"],
        "allow_headers": ["*"],
        "expose_headers": [
            "x-request-id",
            "x-gateway-provider",
            "x-gateway-attempts",
            "x-gateway-dropped-params",
            "x-gateway-cost-usd",
        ],
    }


@asynccontextmanager
async def _limits(settings: Settings, redis: PrefixedRedis | None, ledger: UsageLedger) -> AsyncIterator[Admission]:
    """Rate limits and budgets: in Redis when shared, else in process; rebuilt from the ledger when lost.

    In Redis through a pipelined connection of their own (``store/resp.py``): two round trips a request.
    """
    allowance = settings.default_completion_allowance
    reservation_ttl = settings.request_timeout_seconds + 60
    ledger_totals = ledger.month_totals  # tokens and spend per user, key and team: what lost counters restart from
    client = None
    limits: Admission
    if redis is None or settings.redis_url is None:
        limits = MemoryLimits(
            ledger_totals=ledger_totals,
            completion_allowance=allowance,
            reservation_ttl_seconds=reservation_ttl,
        )
    else:
        client = connect_pipelined(settings.redis_url.get_secret_value())
        limits = RedisLimits(
            client,
            redis.prefix,
            ledger_totals=ledger_totals,
            on_redis_error=settings.limits_on_redis_error,
            timeout_seconds=settings.limits_redis_timeout_seconds,
            completion_allowance=allowance,
            reservation_ttl_seconds=reservation_ttl,
        )
    try:
        yield limits
    finally:
        await limits.aclose()
        if client is not None:
            await client.aclose()


@asynccontextmanager
async def _cache(settings: Settings, *, on_error: ErrorCallback | None = None) -> AsyncIterator[ResponseCache | None]:
    """The response cache: Redis when configured, through a pipelined connection of its own (``store/resp.py``)."""
    if not settings.cache_enabled or settings.cache_ttl_seconds <= 0:
        yield None
        return
    if settings.redis_url is None:
        yield MemoryCache(max_bytes=settings.cache_max_bytes, ttl_seconds=settings.cache_ttl_seconds)
        return
    client = connect_pipelined(settings.redis_url.get_secret_value())
    cache = RedisCache(
        client,
        prefix=f"{settings.redis_prefix}cache:",
        ttl_seconds=settings.cache_ttl_seconds,
        timeout_seconds=settings.cache_redis_timeout_seconds,
        open_for_seconds=settings.cache_redis_open_seconds,
        on_error=on_error,
    )
    try:
        yield cache
    finally:
        await cache.drain()
        await client.aclose()


@asynccontextmanager
async def _cooldowns(settings: Settings, redis: PrefixedRedis | None) -> AsyncIterator[Cooldowns]:
    """Deployments that keep failing, skipped for a while: across the fleet through Redis when there is one."""
    if redis is None:
        yield Cooldowns(settings.cooldown_failures, settings.cooldown_seconds)
        return
    from llm_gateway.providers.shared_cooldowns import SharedCooldowns  # redis-py only with a Redis

    cooldowns = SharedCooldowns(settings.cooldown_failures, settings.cooldown_seconds, redis)
    cooldowns.start()
    try:
        yield cooldowns
    finally:
        await cooldowns.aclose()


def _hint_without_providers(config: GatewayConfig) -> None:
    """A newcomer's first start-up, most likely: say once what to set (each model answers the same, 503)."""
    settings = [api_key_setting(name) for name in config.providers]
    where = " or GATEWAY_CONFIG (a YAML file of providers and model groups)" if config.source == "built-in" else ""
    log.warning(
        "no LLM provider has an API key: set %s%s; until then every model answers 503 no_provider_configured",
        ", ".join(settings) or "a provider in GATEWAY_CONFIG",
        where,
    )


def build_telemetry(
    config: GatewayConfig, *, span_processor: SpanProcessor | None = None, metric_reader: MetricReader | None = None
) -> Telemetry:
    """Telemetry from the settings and ``OTEL_*``; a span processor or metric reader replaces that signal's exporter."""
    settings = config.settings
    helicone_key = settings.helicone_api_key.get_secret_value() if settings.helicone_api_key else None
    return Telemetry.create(
        TelemetrySettings(
            record_content=settings.telemetry_record_content,
            user_id=settings.telemetry_user_id,
            user_id_salt=settings.telemetry_user_id_salt.get_secret_value(),
            helicone_api_key=helicone_key,
            helicone_base_url=settings.helicone_base_url,
            helicone_queue_size=settings.helicone_queue_size,
            helicone_batch_size=settings.helicone_batch_size,
            helicone_timeout_seconds=settings.helicone_timeout_seconds,
            helicone_log_content=settings.helicone_log_content,
            prometheus_multiproc_dir=settings.prometheus_multiproc_dir,
            service_version=__version__,
            provider_systems=genai.provider_systems({name: p.type for name, p in config.providers.items()}),
        ),
        config.otel_env,
        span_processor=span_processor,
        metric_reader=metric_reader,
    )


async def _close_providers(providers: dict[str, Provider]) -> None:
    for provider in providers.values():
        await provider.aclose()


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and ``serve``: each worker process reads the environment once and
    sets up logging (``LOG_LEVEL``, ``LOG_FORMAT``); ``create_app`` itself leaves logging to its caller."""
    config = load_settings()
    setup_logging(config.settings.log_level, config.settings.log_format)
    gc.set_threshold(SERVING_GC_THRESHOLD, 10, 10)
    return create_app(config)


def _install_error_handlers(app: FastAPI) -> None:
    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc, request.scope)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        return error_response(
            InvalidRequest(f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid')}", param=".".join(loc) or None),
            request.scope,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error = FrameworkError(str(exc.detail), status=exc.status_code)
        return error_response(error, request.scope, dict(exc.headers or {}))

    async def store_failed(request: Request, exc: Exception) -> Response:
        # The stores on the LLM routes map their own failures; this catches the admin API's, and any other
        # route's, so that a database outage is a 503 there too, never a 500 (nor a message naming the server).
        log.warning("%s %s: a store failed: %s", request.method, route_path(request.scope), type(exc).__name__)
        return error_response(
            ServiceUnavailable("A store the gateway needs is unavailable; try again shortly."), request.scope
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ClientDisconnect):  # the caller went away: a normal end, not a failure
            log.debug("client disconnected before the answer was sent")
            return Response(status_code=499)
        log.exception("unhandled error", exc_info=exc)
        return error_response(InternalError(), request.scope)

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(SQLAlchemyError, store_failed)
    app.add_exception_handler(OSError, store_failed)  # a connection refused, a name that does not resolve, ...
    app.add_exception_handler(Exception, unexpected)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request bodies the LLM routes parse by hand for speed."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        bodies: dict[str, type[BaseModel]] = {
            "ChatCompletionRequest": ChatCompletionRequest,
            "MessagesRequest": MessagesRequestDoc,
            "CountTokensRequest": CountTokensRequest,
            "CreateEmbeddingRequest": CreateEmbeddingRequest,
            "CreateResponseRequest": CreateResponseRequest,
        }
        for name, model in bodies.items():
            defs = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(defs.pop("$defs", {}))
            components[name] = defs
        _drop_validation_422(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def _drop_validation_422(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 on every route with parameters; the gateway answers those errors 400 in
    OpenAI's envelope (``validation_error`` above), so the 422 and its schemas would only mislead clients."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)

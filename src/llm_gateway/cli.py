"""``llm-gateway``: serve the gateway; manage keys, users and the database without a running server.

``keys``, ``users`` and ``usage`` print the same JSON as the admin API; ``keys`` and ``users`` announce
revocations and limit changes over Redis (when ``REDIS_URL`` is set) so running gateways notice within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Any, cast

from llm_gateway.settings import ConfigError, GatewayConfig, Settings, load_settings

EXIT_USAGE, EXIT_FAILED = 2, 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        gc.enable()  # ``python -m llm_gateway`` starts with it off; ``serve`` turns it on after start-up
    try:
        config = load_settings()
    except ConfigError as exc:
        print(f"llm-gateway: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "serve":
        return serve_forever(config, host=args.host, port=args.port, workers=args.workers)
    action = partial(_usage, settings=config.settings) if args.command == "usage" else args.action
    return _run_admin(action, args, config.settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-gateway", description="An OpenAI-compatible LLM gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="listen address (default: HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default: PORT or 5000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: WORKERS or 1; >1 needs REDIS_URL)")

    keys = commands.add_parser("keys", help="create, list and revoke API keys").add_subparsers(dest="do", required=True)
    create = keys.add_parser("create", help="create a key and print it (the only time it is shown)")
    create.add_argument("--user", required=True, help="the user the key belongs to")
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--models", type=_names, help="comma-separated models the key may use (default: all)")
    create.add_argument("--budget", type=int, help="monthly token cap for this key (inside the user's budget)")
    create.add_argument("--rpm", type=int, help="requests per minute for this key")
    create.add_argument("--expires", help="expiry, ISO 8601 (e.g. 2026-01-31T00:00:00Z)")
    create.set_defaults(action=_create_key)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--user", help="only this user's keys")
    listing.set_defaults(action=_list_keys)
    revoke = keys.add_parser("revoke", help="revoke a key (running gateways notice within a second)")
    revoke.add_argument("id", help="the key's id (the part after sk-gw-, also shown by `keys list`)")
    revoke.set_defaults(action=_revoke_key)

    users = commands.add_parser("users", help="a user's budget and rate limit").add_subparsers(dest="do", required=True)
    set_user = users.add_parser("set", help="set a user's overrides ('default' clears one)")
    set_user.add_argument("user")
    set_user.add_argument("--budget", type=_limit, default=argparse.SUPPRESS, help="monthly tokens, or 'default'")
    set_user.add_argument("--rpm", type=_limit, default=argparse.SUPPRESS, help="requests per minute, or 'default'")
    set_user.set_defaults(action=_set_user)
    show_user = users.add_parser("show", help="print a user's overrides")
    show_user.add_argument("user")
    show_user.set_defaults(action=_show_user)

    usage = commands.add_parser("usage", help="a user's token usage for a month (the JSON of /admin/usage)")
    usage.add_argument("--user", required=True, help="the user id")
    usage.add_argument("--month", type=_month, help="YYYY-MM, UTC (default: this month)")

    database = commands.add_parser("db", help="the database schema").add_subparsers(dest="do", required=True)
    database.add_parser("upgrade", help="apply pending migrations").set_defaults(action=_upgrade)
    return parser


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _month(value: str) -> str:
    from llm_gateway.api.usage import parse_month
    from llm_gateway.errors import InvalidRequest

    try:
        return parse_month(value)
    except InvalidRequest:
        raise argparse.ArgumentTypeError("expected YYYY-MM, e.g. 2025-03") from None


def _limit(value: str) -> int | None:
    if value.lower() in ("default", "none"):
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number or 'default'") from None


Action = Callable[[argparse.Namespace, Any], Awaitable[Any]]


def _run_admin(action: Action, args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from llm_gateway.errors import GatewayError
    from llm_gateway.store.redis import redis_errors

    try:
        result = asyncio.run(_with_accounts(settings, action, args))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"llm-gateway: {problems}", file=sys.stderr)
        return EXIT_USAGE
    except (GatewayError, LookupError) as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (SQLAlchemyError, ValueError) as exc:
        print(f"llm-gateway: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except redis_errors() as exc:  # (RedisError, OSError): evaluated only on an error, so redis-py stays unloaded
        print(f"llm-gateway: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if result is not None:
        print(json.dumps(result, indent=2))
    return 0


async def _with_accounts(settings: Settings, action: Action, args: argparse.Namespace) -> Any:
    async with _accounts(settings) as accounts:
        return await action(args, accounts)


@asynccontextmanager
async def _accounts(settings: Settings) -> AsyncIterator[Any]:
    from llm_gateway.auth.admin import Accounts
    from llm_gateway.auth.invalidation import Invalidations
    from llm_gateway.store.db import open_database
    from llm_gateway.store.redis import open_redis

    async with open_database(settings.database_url.get_secret_value()) as database:
        if settings.redis_url is None:
            yield Accounts(database, Invalidations(None, _ignore, _nothing))
            return
        async with open_redis(settings.redis_url.get_secret_value(), settings.redis_prefix) as redis:
            yield Accounts(database, Invalidations(redis, _ignore, _nothing))


def _ignore(_: str) -> None:
    """The CLI keeps no cache; it only tells the servers."""


def _nothing() -> None:
    """No cache to drop."""


def _json(model: Any) -> Any:
    return model.model_dump(mode="json")


async def _create_key(args: argparse.Namespace, accounts: Any) -> Any:
    from llm_gateway.auth.admin import KeyCreate

    fields = {"user_id": args.user, "name": args.name, "models": args.models, "expires_at": args.expires}
    fields |= {"monthly_token_budget": args.budget, "rate_limit_per_minute": args.rpm}
    created = await accounts.create_key(KeyCreate.model_validate(fields))
    print("Store this key now: it is shown only once.", file=sys.stderr)
    return _json(created)


async def _list_keys(args: argparse.Namespace, accounts: Any) -> Any:
    return {"object": "list", "data": [_json(key) for key in await accounts.list_keys(args.user)]}


async def _revoke_key(args: argparse.Namespace, accounts: Any) -> Any:
    key = await accounts.revoke_key(args.id)
    if key is None:
        raise LookupError(f"no API key with id '{args.id}'")
    return _json(key)


async def _set_user(args: argparse.Namespace, accounts: Any) -> Any:
    from llm_gateway.auth.admin import UserLimits

    given = {"budget": "monthly_token_budget", "rpm": "rate_limit_per_minute"}
    limits = UserLimits.model_validate({field: getattr(args, flag) for flag, field in given.items() if flag in args})
    return _json(await accounts.set_user(args.user, limits))


async def _show_user(args: argparse.Namespace, accounts: Any) -> Any:
    user = await accounts.get_user(args.user)
    if user is None:
        raise LookupError(f"no user '{args.user}' has been configured")
    return _json(user)


async def _usage(args: argparse.Namespace, accounts: Any, *, settings: Settings) -> Any:
    """The ledger's month for a user. Live reservations are in Redis when shared; an embedded
    server keeps them in its own memory, so without ``REDIS_URL`` they show as 0."""
    from llm_gateway.api.usage import build_report, parse_month
    from llm_gateway.auth.api_keys import first_set
    from llm_gateway.store.ledger import UsageLedger

    month = args.month or parse_month(None)
    user = await accounts.get_user(args.user)
    budget = first_set(user.monthly_token_budget if user else None, settings.default_monthly_token_budget)
    ledger = UsageLedger(accounts.database)
    report = await ledger.month_report(args.user, month)
    reserved = 0 if settings.redis_url is None else await _reserved_tokens(settings, ledger, args.user, month, budget)
    return _json(build_report(args.user, month, budget, report, reserved))


async def _reserved_tokens(settings: Settings, ledger: Any, user_id: str, month: str, budget: int) -> int:
    from llm_gateway.limits import RedisLimits, tokens_only_ledger
    from llm_gateway.store.redis import open_redis

    assert settings.redis_url is not None
    async with open_redis(settings.redis_url.get_secret_value(), settings.redis_prefix) as redis:
        limits = RedisLimits(
            redis.client,
            redis.prefix,
            ledger_totals=tokens_only_ledger(ledger.month_usage, ledger.key_month_usage),
            timeout_seconds=settings.limits_redis_timeout_seconds,
        )
        return (await limits.balance(user_id, month, budget)).reserved


async def _upgrade(_: argparse.Namespace, accounts: Any) -> Any:
    # Opening the database migrated it; say where it stands.
    return {"database": accounts.database.backend, "revision": await accounts.database.revision()}


def serve_forever(config: GatewayConfig, *, host: str | None, port: int | None, workers: int | None) -> int:
    import uvicorn

    settings = config.settings
    workers = workers or settings.workers
    if workers > 1 and settings.redis_url is None:
        print(
            "llm-gateway: --workers > 1 needs REDIS_URL: in-process counters would multiply every limit",
            file=sys.stderr,
        )
        return 2
    private_metrics_dir = _prepare_prometheus_dir(settings.prometheus_multiproc_dir, workers)
    try:
        with _collector_paused():
            try:
                _prepare(settings)
            except (ConfigError, ValueError) as exc:
                print(f"llm-gateway: configuration error: {exc}", file=sys.stderr)
                return 2
            from llm_gateway.telemetry import setup_logging  # imports prometheus_client: after the metrics directory

            setup_logging(settings.log_level, settings.log_format)
            if workers == 1:  # uvicorn imports the app in this very process: do it while the collector is off
                importlib.import_module("llm_gateway.app")
        uvicorn.run(
            "llm_gateway.app:create_app_from_env",
            http=_http_protocol(settings),  # httptools, with a bound on the request head's size and time
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            loop="auto",  # uvloop when installed
            ws="none",  # no WebSocket routes: do not import a WebSocket implementation (~25 ms)
            proxy_headers=False,  # X-Forwarded-For is trusted only from TRUSTED_PROXIES, by the gateway itself
            access_log=False,  # one structured line per request comes from the gateway itself
            log_config=None,  # keep setup_logging's handler (each worker sets it up again: create_app_from_env)
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=30,
        )
    finally:
        if private_metrics_dir is not None:
            shutil.rmtree(private_metrics_dir, ignore_errors=True)
    return 0


def _http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, refusing a request head over ``MAX_REQUEST_HEADER_BYTES`` (431) or slower
    than ``REQUEST_HEADER_TIMEOUT_SECONDS`` (408); a ``partial``, so it pickles into worker processes."""
    from llm_gateway.http_protocol import BoundedHttpToolsProtocol

    bounded = partial(
        BoundedHttpToolsProtocol,
        max_header_bytes=settings.max_request_header_bytes,
        header_timeout=settings.request_header_timeout_seconds,
    )
    return cast("type[asyncio.Protocol]", bounded)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Start-up with the cyclic garbage collector off, and what it made frozen at the end.

    Start-up imports make ~180,000 objects that live as long as the process (modules, classes,
    schemas). The collector would walk them over and over while they are made (~20 % of the
    imports' time), then once more in the app's full collection at the end of start-up (~0.1-0.25 s),
    to find ~2,000 objects of garbage. ``gc.freeze()`` takes them out of every later collection, as
    the app's lifespan does with what it builds.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _prepare_prometheus_dir(configured: str | None, workers: int) -> str | None:
    """Prometheus multiprocess mode (``telemetry/metrics.py``): the directory emptied and in the environment
    before prometheus_client is first imported, here and in every worker process (they inherit it).

    Several workers without ``PROMETHEUS_MULTIPROC_DIR`` get a private temporary directory, so ``/metrics``
    on any worker shows the sum of all of them; its path is returned so that it is removed at exit.
    """
    private = None
    if configured is None and workers > 1:
        configured = private = tempfile.mkdtemp(prefix="llm-gateway-metrics-")
    if configured is None:
        return None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = configured
    from llm_gateway.telemetry.metrics import clear_multiproc_dir  # the first import of prometheus_client

    clear_multiproc_dir(configured)
    return private


def _prepare(settings: Settings) -> None:
    """Check secrets and keys, and migrate once here, so N workers do not race to create the same tables."""
    from llm_gateway.auth.service import check_identity_settings
    from llm_gateway.store.db import Database

    check_identity_settings(settings)

    async def migrate() -> None:
        database = Database(settings.database_url.get_secret_value())
        try:
            await database.wait_until_reachable()  # a database still starting (or down): wait, log, retry
            await database.migrate()
        finally:
            await database.aclose()

    asyncio.run(migrate())


if __name__ == "__main__":
    raise SystemExit(main())

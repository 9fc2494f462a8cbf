"""``llm-gateway``: serve the gateway; manage keys, users, teams and the database without a running server.

``keys``, ``users``, ``teams`` and ``usage`` print the same JSON as the admin API; changes are announced over
Redis (when ``REDIS_URL`` is set) so running gateways notice within a second.
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
from pathlib import Path
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
        return serve_forever(config, host=args.host, port=args.port, workers=args.workers, reload=args.reload)
    if args.command == "usage" or (args.command, args.do) == ("teams", "show"):
        action: Action = partial(_usage if args.command == "usage" else _show_team, settings=config.settings)
    else:
        action = args.action
    return _run_admin(action, args, config.settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-gateway", description="An OpenAI-compatible LLM gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="listen address (default: HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default: PORT or 5000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: WORKERS or 1; >1 needs REDIS_URL)")
    serve.add_argument(
        "--reload", action="store_true", help="development: restart when the source or GATEWAY_CONFIG changes"
    )

    keys = commands.add_parser("keys", help="create, list and revoke API keys").add_subparsers(dest="do", required=True)
    create = keys.add_parser("create", help="create a key and print it (the only time it is shown)")
    create.add_argument("--user", required=True, help="the user the key belongs to")
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--models", type=_names, help="comma-separated models the key may use (default: all)")
    create.add_argument("--budget", type=int, help="monthly token cap for this key (inside the user's budget)")
    create.add_argument("--budget-usd", type=_usd, help="monthly US dollar cap for this key, e.g. 25.00")
    create.add_argument("--rpm", type=int, help="requests per minute for this key")
    create.add_argument("--expires", help="expiry, ISO 8601 (e.g. 2026-01-31T00:00:00Z)")
    create.set_defaults(action=_create_key)
    set_key = keys.add_parser("set", help="change a key's own limits ('none' clears one)")
    set_key.add_argument("id", help="the key's id")
    set_key.add_argument("--budget", type=_limit, default=argparse.SUPPRESS, help="monthly tokens, or 'none'")
    set_key.add_argument("--budget-usd", type=_usd, default=argparse.SUPPRESS, help="monthly US dollars, or 'none'")
    set_key.add_argument("--rpm", type=_limit, default=argparse.SUPPRESS, help="requests per minute, or 'none'")
    set_key.set_defaults(action=_set_key)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--user", help="only this user's keys")
    listing.set_defaults(action=_list_keys)
    revoke = keys.add_parser("revoke", help="revoke a key (running gateways notice within a second)")
    revoke.add_argument("id", help="the key's id (the part after sk-gw-, also shown by `keys list`)")
    revoke.set_defaults(action=_revoke_key)

    users = commands.add_parser("users", help="a user's budgets, rate limit and team")
    user_commands = users.add_subparsers(dest="do", required=True)
    set_user = user_commands.add_parser("set", help="set a user's overrides ('default' clears one)")
    set_user.add_argument("user")
    set_user.add_argument("--budget", type=_limit, default=argparse.SUPPRESS, help="monthly tokens, or 'default'")
    set_user.add_argument("--budget-usd", type=_usd, default=argparse.SUPPRESS, help="monthly US dollars, or 'default'")
    set_user.add_argument("--rpm", type=_limit, default=argparse.SUPPRESS, help="requests per minute, or 'default'")
    set_user.add_argument("--team", type=_team, default=argparse.SUPPRESS, help="the user's team, or 'none'")
    set_user.set_defaults(action=_set_user)
    show_user = user_commands.add_parser("show", help="print a user's overrides")
    show_user.add_argument("user")
    show_user.set_defaults(action=_show_user)

    teams = commands.add_parser("teams", help="teams: shared budgets and rate limit").add_subparsers(
        dest="do", required=True
    )
    set_team = teams.add_parser("set", help="create a team or set its limits ('none' clears one)")
    set_team.add_argument("team")
    set_team.add_argument("--budget-usd", type=_usd, default=argparse.SUPPRESS, help="monthly US dollars, or 'none'")
    set_team.add_argument("--token-budget", type=_limit, default=argparse.SUPPRESS, help="monthly tokens, or 'none'")
    set_team.add_argument(
        "--rate-limit", type=_limit, default=argparse.SUPPRESS, help="requests per minute for all members, or 'none'"
    )
    set_team.set_defaults(action=_set_team)
    show_team = teams.add_parser("show", help="a team's limits, members and month (the JSON of GET /admin/teams/ID)")
    show_team.add_argument("team")
    show_team.add_argument("--month", type=_month, help="YYYY-MM, UTC (default: this month)")

    usage = commands.add_parser("usage", help="a user's usage and spend for a month (the JSON of /admin/usage)")
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


def _usd(value: str) -> str | None:
    """Kept as text: the admin models read it as an exact decimal and check its range."""
    return None if value.lower() in ("default", "none") else value


def _team(value: str) -> str | None:
    return None if value.lower() == "none" else value


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
    fields |= {"monthly_token_budget": args.budget, "monthly_budget_usd": args.budget_usd}
    fields |= {"rate_limit_per_minute": args.rpm}
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


def _given(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    """The fields whose flags were given (``argparse.SUPPRESS`` leaves the others out of ``args``)."""
    return {field: getattr(args, flag) for flag, field in flags.items() if flag in args}


_BUDGETS = {"budget": "monthly_token_budget", "budget_usd": "monthly_budget_usd", "rpm": "rate_limit_per_minute"}


async def _set_key(args: argparse.Namespace, accounts: Any) -> Any:
    from llm_gateway.auth.admin import KeyLimits

    key = await accounts.set_key(args.id, KeyLimits.model_validate(_given(args, _BUDGETS)))
    if key is None:
        raise LookupError(f"no API key with id '{args.id}'")
    return _json(key)


async def _set_user(args: argparse.Namespace, accounts: Any) -> Any:
    from llm_gateway.auth.admin import UserLimits

    limits = UserLimits.model_validate(_given(args, {**_BUDGETS, "team": "team_id"}))
    return _json(await accounts.set_user(args.user, limits))


async def _set_team(args: argparse.Namespace, accounts: Any) -> Any:
    from llm_gateway.auth.admin import TeamLimits, check_team_id

    flags = {
        "budget_usd": "monthly_budget_usd",
        "token_budget": "monthly_token_budget",
        "rate_limit": "rate_limit_per_minute",
    }
    return _json(await accounts.set_team(check_team_id(args.team), TeamLimits.model_validate(_given(args, flags))))


async def _show_user(args: argparse.Namespace, accounts: Any) -> Any:
    user = await accounts.get_user(args.user)
    if user is None:
        raise LookupError(f"no user '{args.user}' has been configured")
    return _json(user)


async def _usage(args: argparse.Namespace, accounts: Any, *, settings: Settings) -> Any:
    """A user's month, as ``/admin/usage`` shows it."""
    from llm_gateway.auth.overrides import Defaults
    from llm_gateway.auth.users import load_user_identity
    from llm_gateway.reports import caller_report

    identity = await load_user_identity(accounts.database, args.user, Defaults.of(settings))
    async with _ledger_and_limits(settings, accounts.database) as (ledger, live):
        report = await caller_report(identity, args.month or _this_month(), ledger, live)
    return _json(report)


async def _show_team(args: argparse.Namespace, accounts: Any, *, settings: Settings) -> Any:
    """A team's limits, members and month, as ``GET /admin/teams/ID`` shows them."""
    from llm_gateway.reports import team_month

    team = await accounts.get_team(args.team)
    if team is None:
        raise LookupError(f"no team '{args.team}'")
    async with _ledger_and_limits(settings, accounts.database) as (ledger, live):
        month = args.month or _this_month()
        usage = await team_month(args.team, team.monthly_token_budget, team.monthly_budget_usd, month, ledger, live)
    return {**_json(team), "usage": _json(usage)}


def _this_month() -> str:
    from llm_gateway.api.usage import parse_month

    return parse_month(None)


@asynccontextmanager
async def _ledger_and_limits(settings: Settings, database: Any) -> AsyncIterator[tuple[Any, Any]]:
    """The ledger, and the live reservations: in Redis when shared. An embedded server keeps them in its own
    memory, so without ``REDIS_URL`` they show as 0."""
    from llm_gateway.reports import NoReservations
    from llm_gateway.store.ledger import UsageLedger

    ledger = UsageLedger(database)
    if settings.redis_url is None:
        yield ledger, NoReservations()
        return
    from llm_gateway.limits import RedisLimits  # redis-py only when there is a Redis to read
    from llm_gateway.store.redis import open_redis

    async with open_redis(settings.redis_url.get_secret_value(), settings.redis_prefix) as redis:
        yield (
            ledger,
            RedisLimits(
                redis.client,
                redis.prefix,
                ledger_totals=ledger.month_totals,
                timeout_seconds=settings.limits_redis_timeout_seconds,
            ),
        )


async def _upgrade(_: argparse.Namespace, accounts: Any) -> Any:
    # Opening the database migrated it; say where it stands.
    return {"database": accounts.database.backend, "revision": await accounts.database.revision()}


def serve_forever(
    config: GatewayConfig, *, host: str | None, port: int | None, workers: int | None, reload: bool = False
) -> int:
    from llm_gateway import http_server  # uvicorn.run with a shutdown that loses no queued connection

    settings = config.settings
    workers = 1 if reload else workers or settings.workers
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
            if workers == 1 and not reload:  # uvicorn imports the app in this process: while the collector is off
                importlib.import_module("llm_gateway.app")
        http_server.run(
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
            # A request ends within REQUEST_TIMEOUT_SECONDS, fallbacks and a whole stream included: SIGTERM waits
            # that long for those in flight (the deploy files' grace periods allow for it); a second Ctrl-C forces.
            timeout_graceful_shutdown=settings.request_timeout_seconds,
            **(_reload_options(config) if reload else {}),
        )
    finally:
        if private_metrics_dir is not None:
            shutil.rmtree(private_metrics_dir, ignore_errors=True)
    return 0


def _reload_options(config: GatewayConfig) -> dict[str, Any]:
    """uvicorn's reloader (watchfiles): a new server process whenever a ``.py`` file of the package, or the model
    file in use, changes; that process reads the environment and the file afresh. (Any ``.py`` file beside the
    model file restarts it too: uvicorn's patterns apply to every directory it watches.)"""
    directories = [str(Path(__file__).resolve().parent)]
    includes = ["*.py"]
    if config.source != "built-in":
        model_file = Path(config.source).resolve()
        directories.append(str(model_file.parent))
        includes.append(model_file.name)
    return {"reload": True, "reload_dirs": directories, "reload_includes": includes}


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
    """Check secrets, keys and the database URL; migrate SQLite once here, so that N workers do not queue for its
    write lock. PostgreSQL is left to each worker, in the background under an advisory lock: start-up never
    waits for a database that is down (``open_database(background=True)``)."""
    from llm_gateway.auth.service import check_identity_settings
    from llm_gateway.store.db import Database, async_url

    check_identity_settings(settings)
    url = settings.database_url.get_secret_value()
    if not async_url(url).startswith("sqlite"):
        return

    async def migrate() -> None:
        database = Database(url)
        try:
            await database.migrate()
        finally:
            await database.aclose()

    asyncio.run(migrate())


if __name__ == "__main__":
    raise SystemExit(main())

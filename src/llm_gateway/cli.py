"""``llm-gateway``: serve the gateway (later: manage keys, users, usage and the database)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from llm_gateway.settings import ConfigError, GatewayConfig, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-gateway", description="An OpenAI-compatible LLM gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="listen address (default: HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default: PORT or 5000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: WORKERS or 1; >1 needs REDIS_URL)")
    args = parser.parse_args(argv)

    try:
        config = load_settings()
    except ConfigError as exc:
        print(f"llm-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve_forever(config, host=args.host, port=args.port, workers=args.workers)
    return 2  # pragma: no cover - argparse refuses unknown commands


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
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        "llm_gateway.app:create_app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        loop="auto",  # uvloop when installed
        http="auto",  # httptools when installed
        access_log=False,  # one structured line per request comes from the gateway itself
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

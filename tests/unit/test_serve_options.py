"""What ``llm-gateway serve`` hands uvicorn: options whose effect only shows at shutdown or under load."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway import cli, http_server, telemetry
from llm_gateway.settings import load_settings


def test_sigterm_waits_as_long_as_a_request_may_last(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream may run for REQUEST_TIMEOUT_SECONDS: a shorter graceful shutdown would cut the ones in flight
    (the deploy files' grace periods are this plus the flush at exit)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(http_server, "run", lambda app, **options: seen.update(options))
    monkeypatch.setattr(cli, "_prepare", lambda settings: None)  # no database to migrate here
    monkeypatch.setattr(telemetry, "setup_logging", lambda level, fmt: None)  # this process's logging stays as it is
    config = load_settings({"REQUEST_TIMEOUT_SECONDS": "300", "DATABASE_URL": "sqlite:///:memory:"})
    assert cli.serve_forever(config, host="127.0.0.1", port=9, workers=1) == 0
    assert seen["timeout_graceful_shutdown"] == 300

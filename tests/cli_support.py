"""``cli``: run ``llm-gateway ARGS`` in-process against the module's database (``database_url``), no Redis.

A plugin of ``conftest.py``: a module that imports the ``database_url`` fixture has ``cli`` too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_gateway.cli import main


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli(*args)`` -> (exit code, the printed JSON or None); ``cli.err`` is what it wrote to stderr."""
    for name in ("REDIS_URL", "ADMIN_API_KEY", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GATEWAY_CONFIG", "")

    class Cli:
        err = ""

        def __call__(self, *args: str) -> tuple[int, Any]:
            code = main(list(args))
            captured = capsys.readouterr()
            self.err = captured.err
            return code, json.loads(captured.out) if captured.out.strip() else None

    return Cli()

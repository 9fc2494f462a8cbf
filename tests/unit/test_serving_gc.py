"""A serving process runs the cyclic collector rarely: its pauses delay every stream in flight."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from llm_gateway.app import SERVING_GC_THRESHOLD, create_app_from_env


def test_the_server_factory_raises_the_collectors_first_threshold(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/gc.db")
    monkeypatch.setattr("llm_gateway.app.setup_logging", lambda *args: None)  # the test process's logging stays
    before = gc.get_threshold()
    try:
        create_app_from_env()
        assert gc.get_threshold() == (SERVING_GC_THRESHOLD, 10, 10)
    finally:
        gc.set_threshold(*before)

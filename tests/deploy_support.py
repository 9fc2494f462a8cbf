"""What the deployment-file tests (tests/deploy/) share: the repository's paths, YAML documents, compose's
``${VAR}`` interpolation, and the question whether an environment holds only settings the gateway knows.

Nothing here pulls an image or reaches a network: the files are read, rendered and checked offline.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_gateway.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"

# How long the gateway may take to exit after the last request ends: the ledger (10 s), Helicone (2 s) and
# OTLP (5 s) flushes, as README.md's "When Redis or the database fails" lists them.
EXIT_FLUSH_SECONDS = 17

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def require_tool(name: str, package: str) -> str:
    """The tool's path; a clear failure (never a skip) when it is missing: .ci/run installs it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: `apt-get install {package}` (.ci/run installs it when missing)")
    return path


def variables(text: str) -> set[str]:
    """The names of every ``${VAR}`` a compose file interpolates."""
    return {match["name"] for match in _VARIABLE.finditer(text)}


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``${VAR}``, ``${VAR:-default}``; ``${VAR:?message}`` left unset gives a
    placeholder (compose itself would stop and print the message)."""

    def one(match: re.Match[str]) -> str:
        given = env.get(match["name"], "")
        if given or not match["op"]:
            return given
        return match["arg"] if match["op"].endswith("-") else "placeholder"

    return _VARIABLE.sub(one, value)


def env_file_names(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of an env file, commented-out ``# NAME=value`` ones included (documented defaults)."""
    names: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            names[match[1]] = match[2]
    return names


def unknown_settings(names: Iterable[str]) -> list[str]:
    """Names that are neither a gateway setting nor a standard ``OTEL_*`` variable: the gateway would ignore
    them in silence, so each one is a misspelling."""
    known = {field.upper() for field in Settings.model_fields}
    return sorted(name for name in names if name not in known and not name.startswith("OTEL_"))

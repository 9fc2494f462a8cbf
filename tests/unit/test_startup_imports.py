"""Start-up stays cheap: heavy optional dependencies are imported only when configured, and the
schema's head revision is known without Alembic.

Each check runs in a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

from llm_gateway.store.db import HEAD_REVISION, head_revision

# What an embedded gateway (no REDIS_URL, no JWT, no OTLP export, schema at head) must not import.
OPTIONAL = (
    "alembic",
    "redis",
    "jwt",
    "cryptography",
    "opentelemetry.sdk",
    "sqlalchemy.dialects.postgresql",
    "botocore",  # the Bedrock extra
    "google.auth",  # the Vertex AI extra
)


def imported_after(statement: str) -> list[str]:
    """The top-level names of ``OPTIONAL`` that ``statement`` imports, in a fresh interpreter."""
    probe = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    modules = json.loads(done.stdout.splitlines()[-1])
    return sorted({name for name in OPTIONAL for module in modules if module == name or module.startswith(name + ".")})


def test_the_head_revision_constant_is_alembics_head() -> None:
    """A new migration must update ``HEAD_REVISION``: a database at the old head would skip it at start-up."""
    assert head_revision() == HEAD_REVISION


def test_importing_the_app_and_the_cli_leaves_optional_dependencies_alone() -> None:
    assert imported_after("import llm_gateway.app, llm_gateway.cli") == []


def test_building_the_app_without_redis_jwt_or_otlp_leaves_them_alone() -> None:
    statement = (
        "from llm_gateway.app import create_app\n"
        "from llm_gateway.settings import load_settings\n"
        "create_app(load_settings({'GATEWAY_CONFIG': '', 'DATABASE_URL': 'sqlite:///:memory:'}))"
    )
    assert imported_after(statement) == []

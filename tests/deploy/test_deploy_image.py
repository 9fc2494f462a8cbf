"""The Dockerfile and .dockerignore, checked by reading them: nothing on this machine can pull a base image,
so no image is built here (README.md, "Deploying", says so).

The health check's one-liner is run for real against a stub server: it must pass on 200 and fail on 503
or on a closed port, with the Python of the image (no curl in a slim image).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.deploy_support import REPO
from tests.services import free_port

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(KEYWORD, arguments) for each instruction, continuation lines joined and comments dropped."""
    lines = [line for line in (REPO / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def stages() -> dict[str, list[Instruction]]:
    named: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", arguments, re.IGNORECASE)
            assert match, f"every stage is named: FROM {arguments}"
            current = named.setdefault(match[2], [("FROM", match[1])])
        else:
            current.append((keyword, arguments))
    return named


def arguments(stage: list[Instruction], keyword: str) -> list[str]:
    return [args for key, args in stage if key == keyword]


def test_two_stages_build_a_wheel_with_the_lock_and_ship_only_the_venv() -> None:
    named = stages()
    assert list(named) == ["build", "runtime"]
    build, runtime = named["build"], named["runtime"]
    base = dict(re.findall(r"(\w+)=(\S+)", " ".join(args for key, args in instructions() if key == "ARG")))
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base["PYTHON_IMAGE"]), "a slim Python base, pinned"
    assert build[0] == runtime[0] == ("FROM", "${PYTHON_IMAGE}"), "one base: the venv's interpreter path holds"

    run = " ".join(arguments(build, "RUN"))
    assert "pip wheel" in run and re.search(r"pip install -c requirements\.lock /dist/\*\.whl", run)
    copied = [path for args in arguments(build, "COPY") for path in args.split()[:-1]]
    for path in copied:
        assert (REPO / path).exists(), f"COPY {path}: no such file in the repository"

    assert arguments(runtime, "COPY") == ["--from=build /opt/venv /opt/venv"], "the final stage holds the venv only"
    assert not any("pip " in args for args in arguments(runtime, "RUN")), "no build tool runs in the final stage"
    assert "PATH=/opt/venv/bin:$PATH" in " ".join(arguments(runtime, "ENV"))


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    runtime = stages()["runtime"]
    (user,) = arguments(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can check it"
    assert f"GATEWAY_UID={uid}" in " ".join(arguments(runtime, "ARG")), "USER is the user the stage creates"
    assert [key for key, _ in runtime].index("USER") > [key for key, _ in runtime].index("COPY")


def test_serves_on_5000_with_llm_gateway_serve() -> None:
    runtime = stages()["runtime"]
    assert arguments(runtime, "EXPOSE") == ["5000"]
    (cmd,) = arguments(runtime, "CMD")
    assert json.loads(cmd) == ["llm-gateway", "serve"], "exec form: the gateway is PID 1 and receives SIGTERM"


def healthcheck() -> tuple[str, list[str]]:
    (check,) = arguments(stages()["runtime"], "HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    return options, json.loads(command)


def test_healthcheck_asks_health_with_python_not_curl() -> None:
    options, command = healthcheck()
    assert command[:2] == ["python", "-c"], "the slim image has no curl"
    assert "/health'" in command[2]
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)


class _Stub(BaseHTTPRequestHandler):
    status: ClassVar[dict[str, int]] = {"/health": 200}

    def do_GET(self) -> None:
        self.send_response(self.status.get(self.path, 404))
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def stub_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("health", "passes"), [(200, True), (503, False)])
def test_healthcheck_command_passes_on_200_only(
    stub_port: int, health: int, passes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_Stub.status, "/health", health)
    _, command = healthcheck()
    done = subprocess.run([sys.executable, *command[1:]], env={"PORT": str(stub_port)}, capture_output=True, timeout=20)
    assert (done.returncode == 0) is passes, done.stderr


def test_healthcheck_command_fails_when_nothing_listens() -> None:
    _, command = healthcheck()
    done = subprocess.run([sys.executable, *command[1:]], env={"PORT": str(free_port())}, capture_output=True)
    assert done.returncode != 0


SENT = """pyproject.toml requirements.lock README.md src/llm_gateway/app.py src/llm_gateway/limits/lua/admit.lua
src/llm_gateway/store/migrations/env.py""".split()
KEPT_OUT = """.git/HEAD .venv/bin/python .env deploy/.env deploy/k8s/secret.yaml gateway.db gateway.db-wal
src/gateway.db
.pytest_cache/v .mypy_cache/3.11/x.json .ruff_cache/x .hypothesis/examples/x tests/unit/test_router.py
bench/results/x.json src/llm_gateway/__pycache__/app.cpython-311.pyc src/llm_gateway.egg-info/PKG-INFO src/.env
src/prod.env""".split()


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides; ``!`` re-includes."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = regex.replace(r"\[", "[").replace(r"\]", "]")  # character classes such as [cod]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_sends_only_the_sources_to_the_builder() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for needed in SENT:
        assert not dockerignored(needed, patterns), needed
    for kept_out in KEPT_OUT:
        assert dockerignored(kept_out, patterns), kept_out

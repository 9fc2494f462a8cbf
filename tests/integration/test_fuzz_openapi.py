"""Schemathesis against the gateway's own ``/openapi.json``: no 5xx, every error in the caller's envelope
(Anthropic's on the Messages API's routes, OpenAI's elsewhere).

One gateway (fake upstreams, its own SQLite) serves the module. Each documented operation is fuzzed
with a bounded number of valid and invalid examples, with the credentials its route needs (an API key
on ``/v1``, ``ADMIN_API_KEY`` on ``/admin``), and a few without any so that refusals are checked too.
Schemathesis's Python API is used (not its pytest plugin, whose lazy-fixture mode breaks on pytest 9).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.fakes.upstream import FakeProvider
from tests.harness import GatewayServer
from tests.identity_support import ADMIN_API_KEY, ADMIN_HEADERS, create_key, sqlite_url
from tests.strategies import IGNORE_RANDOM_FROM_OTHER_THREADS

pytestmark = [pytest.mark.integration, IGNORE_RANDOM_FROM_OTHER_THREADS]

CHAT = "POST /v1/chat/completions"
MESSAGES = "POST /v1/messages"
COUNT_TOKENS = "POST /v1/messages/count_tokens"
EMBEDDINGS = "POST /v1/embeddings"
RESPONSES = "POST /v1/responses"
# Anonymous callers are allowed on these (ALLOW_ANONYMOUS).
LLM_ROUTES = {CHAT, MESSAGES, COUNT_TOKENS, EMBEDDINGS, RESPONSES}
# Every operation in /openapi.json; a new route fails `test_every_operation_is_fuzzed` until listed.
OPERATIONS = (
    CHAT,
    MESSAGES,
    COUNT_TOKENS,
    EMBEDDINGS,
    RESPONSES,
    "GET /v1/responses/{response_id}",
    "DELETE /v1/responses/{response_id}",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "GET /v1/usage",
    "POST /admin/keys",
    "GET /admin/keys",
    "GET /admin/usage",
    "DELETE /admin/keys/{key_id}",
    "PATCH /admin/keys/{key_id}",
    "PUT /admin/users/{user_id}",
    "GET /admin/users/{user_id}",
    "PUT /admin/teams/{team_id}",
    "GET /admin/teams/{team_id}",
    "GET /",
    "GET /health",
    "GET /ready",
)
# Bounded so the module runs in well under a minute; chat, the route that matters most, gets more.
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
CHAT_FACTOR = 3
# Operations whose every input is a free string: there is nothing schema-invalid to send.
NOTHING_INVALID = {
    "GET /v1/models",
    "GET /v1/responses/{response_id}",
    "DELETE /v1/responses/{response_id}",
    "GET /v1/models/{model}",
    "DELETE /admin/keys/{key_id}",
    "GET /admin/users/{user_id}",
    "GET /",
    "GET /health",
    "GET /ready",
}
# Where the schema cannot say all the gateway checks, a 400 for schema-valid data (and, for chat, a
# pass-through of schema-invalid data) is the contract, not a bug; the envelope is still asserted.
# Chat: the gateway checks only what it needs and the provider applies its own rules (Anthropic:
# `n` must be 1, tool messages need `tool_call_id`, ...). Keys: user ids must be printable, `expires_at`
# in the future. US dollar amounts: at most six decimals, which a JSON Schema number cannot say exactly.
# Users: a `team_id` must name a team that exists. Teams: their ids must be printable.
NOT_CHECKED: dict[str, list[Any]] = {
    CHAT: [positive_data_acceptance, negative_data_rejection],
    MESSAGES: [positive_data_acceptance, negative_data_rejection],
    COUNT_TOKENS: [positive_data_acceptance, negative_data_rejection],
    EMBEDDINGS: [positive_data_acceptance, negative_data_rejection],
    RESPONSES: [positive_data_acceptance, negative_data_rejection],
    "POST /admin/keys": [positive_data_acceptance],
    "PATCH /admin/keys/{key_id}": [positive_data_acceptance],
    "PUT /admin/users/{user_id}": [positive_data_acceptance],
    "PUT /admin/teams/{team_id}": [positive_data_acceptance],
}
# A fuzzed model name almost never exists: most chat cases are pointed at a served model instead,
# so the fuzzer reaches routing, translation and the upstreams rather than only the 404.
SERVED_MODELS = ("gpt-4o-mini", "claude-3-5-haiku-latest", "llama-3.1-8b-instant", "groq/llama-3.1-8b-instant")
LLM_PATHS = ("/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses")
EMBEDDINGS_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "openai/text-embedding-3-small")
ENVELOPE_FIELDS = {"message", "type", "param", "code"}


@dataclass(frozen=True)
class Served:
    url: str
    api_key: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with ExitStack() as stack:
        fakes = [stack.enter_context(FakeProvider(kind)) for kind in ("openai", "anthropic", "groq")]  # type: ignore[arg-type]
        env = {
            "GATEWAY_CONFIG": "",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": sqlite_url(Path(tmp_path_factory.mktemp("fuzz"))),
            "ADMIN_API_KEY": ADMIN_API_KEY,
        }
        for fake in fakes:
            env.update(fake.env)
        server = stack.enter_context(GatewayServer(env))
        # Limits high enough that the fuzzer is not refused for its pace (refusals are tested elsewhere).
        key = create_key(server.base_url, "fuzzer", rate_limit_per_minute=10**6, monthly_token_budget=10**12)
        yield Served(server.base_url, key)


@pytest.fixture(scope="module")
def api_schema(served: Served) -> Any:
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def credentials(path: str, served: Served) -> dict[str, str]:
    if path.startswith("/admin"):
        return dict(ADMIN_HEADERS)
    return {"authorization": f"Bearer {served.api_key}"}


def point_at_served_model(case: Any) -> None:
    body = case.body
    served = EMBEDDINGS_MODELS if case.path == "/v1/embeddings" else SERVED_MODELS
    if (
        (case.path in LLM_PATHS or served is EMBEDDINGS_MODELS)
        and isinstance(body, dict)
        and isinstance(body.get("model"), str)
    ):
        choice = len(body["model"]) % (len(served) + 1)  # one in so many keeps the fuzzed name
        if choice < len(served):
            body["model"] = served[choice]


def assert_openai_error(response: Any) -> None:
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert ENVELOPE_FIELDS <= set(error), error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error


def assert_anthropic_error(response: Any) -> None:
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and body.get("type") == "error", body
    error = body["error"]
    assert set(error) == {"type", "message"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"].endswith(("_error", "request_too_large")), error
    assert body.get("request_id") == response.headers["request-id"][0], body


def check(case: Any, response: Any) -> None:
    # The upstreams are healthy fakes: any 5xx is the gateway's own failure.
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        (assert_anthropic_error if case.path.startswith("/v1/messages") else assert_openai_error)(response)
    # Status codes, content types, bodies and headers as documented.
    case.validate_response(response, excluded_checks=NOT_CHECKED.get(case.operation.label, []))


def fuzz(api_schema: Any, label: str, mode: GenerationMode, examples: int, call: Any) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy(generation_mode=mode))
    # No shrinking and no example database: the run's length is bounded by `examples` alone.
    @settings(
        max_examples=examples,
        phases=[Phase.explicit, Phase.generate],
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        call(case)

    run()


def test_every_operation_is_fuzzed(api_schema: Any) -> None:
    labels = {operation.ok().label for operation in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize(
    ("label", "mode"),
    [
        (label, mode)
        for label in OPERATIONS
        for mode in EXAMPLES
        if mode is GenerationMode.POSITIVE or label not in NOTHING_INVALID
    ],
    ids=lambda value: value.value if isinstance(value, GenerationMode) else value,
)
def test_fuzzed_requests_get_documented_answers_and_openai_errors(
    api_schema: Any, served: Served, session: requests.Session, label: str, mode: GenerationMode
) -> None:
    def call(case: Any) -> None:
        if mode is GenerationMode.POSITIVE:
            point_at_served_model(case)
        check(case, case.call(session=session, headers=credentials(case.path, served), timeout=30))

    fuzz(api_schema, label, mode, EXAMPLES[mode] * (CHAT_FACTOR if label in (CHAT, MESSAGES) else 1), call)


# Open to anyone: what this is, and whether it is up and ready (orchestrators' probes carry no credentials).
PUBLIC = ("GET /", "GET /health", "GET /ready")


@pytest.mark.parametrize("label", [label for label in OPERATIONS if label not in PUBLIC])
def test_fuzzed_requests_without_credentials_are_refused_in_the_envelope(
    api_schema: Any, session: requests.Session, label: str
) -> None:
    def call(case: Any) -> None:
        response = case.call(session=session, timeout=30)
        check(case, response)
        if label not in LLM_ROUTES:  # anonymous callers are allowed there (ALLOW_ANONYMOUS)
            assert response.status_code == 401, response.text

    fuzz(api_schema, label, GenerationMode.POSITIVE, 3, call)

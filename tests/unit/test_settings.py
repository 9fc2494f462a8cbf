"""Settings: environment and YAML, validated once, errors that name the field, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.settings import ConfigError, expand_env, load_settings


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_follow_the_design() -> None:
    config = load_settings({})
    s = config.settings
    assert (s.host, s.port, s.workers) == ("0.0.0.0", 5000, 1)
    assert s.database_url.get_secret_value() == "sqlite:///./gateway.db"
    assert (s.rate_limit_per_minute, s.anon_rate_limit_per_minute) == (60, 10)
    assert (s.default_monthly_token_budget, s.anon_monthly_token_budget) == (1_000_000, 10_000)
    assert (s.cache_ttl_seconds, s.cache_scope) == (300, "user")
    assert s.responses_ttl_days == 30
    assert s.max_request_bytes == 4 * 1024 * 1024
    assert (s.upstream_timeout_seconds, s.request_timeout_seconds) == (600, 900)
    assert s.allow_anonymous is True and s.jwt_algorithm == "HS256"
    assert config.source == "built-in"
    assert [d.provider for d in config.models["gpt-4o-mini"]] == ["openai", "anthropic", "groq"]
    assert {name: p.base_url for name, p in config.providers.items()} == {
        "openai": "https://api.openai.com/v1",
        "anthropic": "https://api.anthropic.com",
        "groq": "https://api.groq.com/openai/v1",
        "gemini": "https://generativelanguage.googleapis.com",
    }
    assert not any(p.usable for p in config.providers.values())


def test_provider_keys_and_urls_from_the_environment() -> None:
    config = load_settings({"OPENAI_API_KEY": "sk-test", "GROQ_BASE_URL": "http://127.0.0.1:9/openai/v1/"})
    assert config.providers["openai"].usable
    assert config.providers["groq"].base_url == "http://127.0.0.1:9/openai/v1"
    assert not config.providers["groq"].usable


def test_secrets_never_appear_in_repr() -> None:
    env = {
        "OPENAI_API_KEY": "sk-secret-openai",
        "ADMIN_API_KEY": "admin-secret",
        "JWT_SECRET": "jwt-secret",
        "REDIS_URL": "redis://:pw-secret@127.0.0.1:6379/0",
    }
    config = load_settings(env)
    text = repr(config) + str(config) + repr(config.settings)
    for secret in ("sk-secret-openai", "admin-secret", "jwt-secret", "pw-secret"):
        assert secret not in text


def test_yaml_with_env_expansion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
providers:
  local:
    type: openai
    base_url: http://127.0.0.1:11434/v1
    api_key: "${OLLAMA_KEY}"
  anthropic:
    type: anthropic
    api_key: "${ANTHROPIC_API_KEY}"
    default_max_tokens: 1024
models:
  house:
    - {provider: local, model: "llama3.2:${SIZE}"}
    - {provider: anthropic, model: claude-3-5-haiku-latest}
""",
    )
    config = load_settings({"GATEWAY_CONFIG": path, "OLLAMA_KEY": "ollama", "SIZE": "3b", "ANTHROPIC_API_KEY": "k"})
    assert config.source == path
    assert config.providers["local"].api_key is not None
    assert config.providers["local"].api_key.get_secret_value() == "ollama"
    assert config.providers["anthropic"].default_max_tokens == 1024
    assert config.providers["anthropic"].base_url == "https://api.anthropic.com"
    assert [(d.provider, d.model) for d in config.models["house"]] == [
        ("local", "llama3.2:3b"),
        ("anthropic", "claude-3-5-haiku-latest"),
    ]


def test_unset_variable_expands_to_empty_and_skips_the_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
providers:
  openai: {type: openai, api_key: "${NOT_SET_ANYWHERE}"}
models:
  m: [{provider: openai, model: gpt-4o-mini}]
""",
    )
    assert not load_settings({"GATEWAY_CONFIG": path}).providers["openai"].usable


def test_which_providers_take_the_responses_api_natively(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
providers:
  openai: {type: openai}
  groq: {type: openai}
  vllm: {type: openai, base_url: "http://127.0.0.1:8000/v1", responses: native}
  azure: {type: openai, base_url: "https://x.openai.azure.com/openai/v1", responses: translated}
  anthropic: {type: anthropic}
  claude: {type: anthropic, base_url: "https://proxy.example/anthropic", responses: translated}
""",
    )
    providers = load_settings({"GATEWAY_CONFIG": path}).providers
    native = {name for name, provider in providers.items() if provider.native_responses(name)}
    assert native == {"openai", "vllm"}
    assert providers["openai"].responses is None and providers["azure"].responses == "translated"
    renamed = write(tmp_path, "providers: {openai: {type: openai, responses: translated}}")
    assert not load_settings({"GATEWAY_CONFIG": renamed}).providers["openai"].native_responses("openai")
    built_in = load_settings({}).providers
    assert [name for name, provider in built_in.items() if provider.native_responses(name)] == ["openai"]


def test_an_anthropic_provider_cannot_take_responses_natively(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: {claude: {type: anthropic, responses: native}}")
    with pytest.raises(ConfigError) as caught:
        load_settings({"GATEWAY_CONFIG": path})
    assert str(caught.value) == (
        f"{path}: providers.claude.responses: Value error, "
        "'native' needs a provider of type openai (only OpenAI's wire has /v1/responses)"
    )


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"CACHE_SCOPE": "team"}, "CACHE_SCOPE"),
        ({"JWT_ALGORITHM": "none"}, "JWT_ALGORITHM"),
        ({"MAX_REQUEST_BYTES": "-1"}, "MAX_REQUEST_BYTES"),
        ({"RESPONSES_TTL_DAYS": "0"}, "RESPONSES_TTL_DAYS"),
        ({"ALLOW_ANONYMOUS": "perhaps"}, "ALLOW_ANONYMOUS"),
        ({"GATEWAY_CONFIG": "/does/not/exist.yaml"}, "GATEWAY_CONFIG"),
        ({"JWT_PUBLIC_KEY": "pem", "JWT_ALGORITHM": "HS256"}, "JWT_ALGORITHM"),
    ],
)
def test_bad_environment_names_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_settings(env)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("providers: {x: {type: cohere, base_url: 'http://a'}}", "providers.x.type"),
        ("providers: {x: {type: openai}}", "providers.x.base_url"),
        ("providers: {x: {type: openai, base_url: 'ftp://a'}}", "providers.x.base_url"),
        ("providers: {openai: {type: openai, colour: red}}", "providers.openai.colour"),
        ("providers: {openai: {type: openai, responses: chat}}", "providers.openai.responses"),
        ("models: {m: [{provider: nowhere, model: a}]}", "models.m.0.provider"),
        ("models: {m: []}", "models.m"),
        ("models: {m: [{provider: openai}]}", "models.m.0.model"),
        ("- just a list", "top level"),
        ("providers: [unclosed", "cannot read"),
    ],
)
def test_bad_yaml_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings({"GATEWAY_CONFIG": write(tmp_path, text)})


def test_expand_env_walks_nested_values() -> None:
    tree = {"a": ["${X}-${Y}", 3, {"b": "${X}"}], "c": None}
    assert expand_env(tree, {"X": "1"}) == {"a": ["1-", 3, {"b": "1"}], "c": None}


CLOUDS = """
providers:
  eu: {type: azure, base_url: "https://myres.openai.azure.com", api_version: "2024-10-21", api_key: k}
  entra: {type: azure, base_url: "https://myres.openai.azure.com", azure_ad_token: "${ENTRA_TOKEN}"}
  aws: {type: bedrock}
  gcp: {type: vertex, credentials_file: /etc/sa.json}
  google: {type: gemini, api_key: g}
"""


def test_cloud_providers_take_region_project_and_keys_from_the_clouds_variables(tmp_path: Path) -> None:
    env = {
        "GATEWAY_CONFIG": write(tmp_path, CLOUDS),
        "AWS_REGION": "eu-west-3",
        "AWS_BEARER_TOKEN_BEDROCK": "bedrock-key",
        "GOOGLE_CLOUD_PROJECT": "proj",
        "GOOGLE_CLOUD_LOCATION": "europe-west4",
        "ENTRA_TOKEN": "entra",
    }
    providers = load_settings(env).providers
    assert providers["aws"].region == "eu-west-3"
    assert providers["aws"].api_key is not None and providers["aws"].api_key.get_secret_value() == "bedrock-key"
    assert (providers["gcp"].project, providers["gcp"].location) == ("proj", "europe-west4")
    assert providers["google"].base_url == "https://generativelanguage.googleapis.com"
    assert providers["eu"].api_version == "2024-10-21"
    assert all(provider.usable for provider in providers.values())
    del env["ENTRA_TOKEN"]
    assert not load_settings(env).providers["entra"].usable  # neither api_key nor a token


@pytest.mark.parametrize(
    ("yaml", "env", "message"),
    [
        ("{aws: {type: bedrock}}", {}, "providers.aws.region: required (or AWS_REGION) for a provider of type bedrock"),
        (
            "{gcp: {type: vertex, location: global}}",
            {},
            "providers.gcp.project: required (or GOOGLE_CLOUD_PROJECT) for a provider of type vertex",
        ),
        ("{eu: {type: azure, api_key: k}}", {}, "providers.eu.base_url: required for a provider of type azure"),
    ],
)
def test_a_cloud_provider_missing_where_it_is_says_what_to_set(
    tmp_path: Path, yaml: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"GATEWAY_CONFIG": write(tmp_path, f"providers: {yaml}"), **env})
    assert str(caught.value) == message


def test_a_setting_of_another_type_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: {openai: {type: openai, region: us-east-1}}")
    with pytest.raises(ConfigError, match="'region' is a setting of type bedrock providers, not of type openai"):
        load_settings({"GATEWAY_CONFIG": path})
    half = write(tmp_path, "providers: {aws: {type: bedrock, region: us-east-1, aws_access_key_id: AKIA}}")
    with pytest.raises(ConfigError, match="set both aws_access_key_id and aws_secret_access_key, or neither"):
        load_settings({"GATEWAY_CONFIG": half})

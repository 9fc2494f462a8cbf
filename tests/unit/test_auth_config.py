"""Identity settings are checked once at start-up: weak secrets and impossible JWT set-ups stop it."""

from __future__ import annotations

import pytest

from llm_gateway.auth.service import check_identity_settings
from llm_gateway.cli import main
from llm_gateway.settings import ConfigError, load_settings

BASE = {"GATEWAY_CONFIG": ""}


def test_identity_defaults() -> None:
    settings = load_settings(BASE).settings
    assert settings.allow_anonymous is True
    assert settings.admin_api_key is None and settings.jwt_secret is None
    assert settings.redis_prefix == "llmgw:"
    assert settings.key_cache_ttl_seconds == 30.0
    assert settings.jwt_leeway_seconds == 30.0
    assert settings.trusted_proxies == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JWT_ALGORITHM": "RS256"}, "set exactly one of JWT_PUBLIC_KEY and JWT_JWKS_URL"),
        ({"JWT_ALGORITHM": "ES256", "JWT_PUBLIC_KEY": "k", "JWT_JWKS_URL": "https://x"}, "exactly one"),
        ({"JWT_JWKS_URL": "https://issuer/jwks"}, "need an asymmetric algorithm"),
        ({"JWT_ALGORITHM": "none"}, "JWT_ALGORITHM"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"}, "TRUSTED_PROXIES"),
        ({"KEY_CACHE_TTL_SECONDS": "-1"}, "KEY_CACHE_TTL_SECONDS"),
    ],
)
def test_bad_identity_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({**BASE, **env})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JWT_SECRET": "short"}, "JWT_SECRET: must be at least 32 bytes for HS256"),
        ({"JWT_SECRET": "x" * 40, "JWT_ALGORITHM": "HS512"}, "JWT_SECRET: must be at least 64 bytes for HS512"),
        ({"ADMIN_API_KEY": "admin"}, "ADMIN_API_KEY: must be at least 16 characters"),
        ({"JWT_ALGORITHM": "RS256", "JWT_PUBLIC_KEY": "/no/such/key.pem"}, "JWT_PUBLIC_KEY"),
    ],
)
def test_guessable_secrets_stop_the_gateway_from_serving(env: dict[str, str], message: str) -> None:
    settings = load_settings({**BASE, **env}).settings  # readable, so tools can still show the configuration
    with pytest.raises(ConfigError, match=message):
        check_identity_settings(settings)


def test_serve_refuses_a_guessable_secret_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_CONFIG", "")
    monkeypatch.setenv("JWT_SECRET", "short")
    monkeypatch.delenv("JWT_ALGORITHM", raising=False)
    monkeypatch.setattr("logging.basicConfig", lambda **kwargs: None)
    assert main(["serve"]) == 2
    error = capsys.readouterr().err
    assert error == "llm-gateway: configuration error: JWT_SECRET: must be at least 32 bytes for HS256\n"


def test_strong_secrets_pass() -> None:
    check_identity_settings(load_settings({**BASE, "JWT_SECRET": "s" * 32, "ADMIN_API_KEY": "a" * 16}).settings)


def test_empty_variables_mean_unset() -> None:
    settings = load_settings({**BASE, "ADMIN_API_KEY": "", "JWT_SECRET": "", "REDIS_URL": "", "JWT_ISSUER": " "})
    assert settings.settings.admin_api_key is None
    assert settings.settings.jwt_secret is None
    assert settings.settings.redis_url is None
    assert settings.settings.jwt_issuer is None


def test_secrets_never_show_in_the_settings_repr() -> None:
    secret, admin = "s" * 40, "a" * 20
    settings = load_settings({**BASE, "JWT_SECRET": secret, "ADMIN_API_KEY": admin}).settings
    assert secret not in repr(settings) and admin not in repr(settings)
    assert settings.trusted_proxies == []
    proxies = load_settings({**BASE, "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1"}).settings.trusted_proxies
    assert proxies == ["10.0.0.0/8", "192.168.1.1"]

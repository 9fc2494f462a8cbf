"""Every setting of the gateway: environment variables plus the YAML model-group file.

Read once at start-up by ``load_settings()``, validated, and passed in; nothing else in
the package reads ``os.environ``. A bad value raises ``ConfigError`` naming the field.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llm_gateway.pricing import Price

PUBLIC_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "groq": "https://api.groq.com/openai/v1",
    "gemini": "https://generativelanguage.googleapis.com",
}
# provider name -> the type of its adapter, for the built-in providers (each with its <NAME>_API_KEY)
BUILTIN_PROVIDER_TYPES = {"openai": "openai", "anthropic": "anthropic", "groq": "openai", "gemini": "gemini"}
# The public origin of a provider type that has one (a provider of that type with no base_url reaches it).
TYPE_BASE_URLS = {"gemini": PUBLIC_BASE_URLS["gemini"]}
ProviderType = Literal["openai", "anthropic", "azure", "bedrock", "gemini", "vertex"]
# Settings that only one provider type reads: set on another, they are a mistake, not ignored.
_TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "azure": ("api_version", "azure_ad_token"),
    "bedrock": ("region", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_profile"),
    "vertex": ("project", "location", "credentials_file"),
}

# Built-in model groups when no YAML file exists: OpenAI, then Anthropic, then Groq.
DEFAULT_MODEL_GROUPS: dict[str, list[tuple[str, str]]] = {
    "gpt-4o-mini": [
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-haiku-latest"),
        ("groq", "llama-3.1-8b-instant"),
    ],
    "gpt-4.1-mini": [
        ("openai", "gpt-4.1-mini"),
        ("anthropic", "claude-3-5-haiku-latest"),
        ("groq", "llama-3.1-8b-instant"),
    ],
    "gpt-4o": [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("groq", "llama-3.3-70b-versatile")],
    "gpt-4.1": [("openai", "gpt-4.1"), ("anthropic", "claude-sonnet-4-5"), ("groq", "llama-3.3-70b-versatile")],
    # Embeddings: OpenAI only (Anthropic and Groq have no embeddings API).
    "text-embedding-3-small": [("openai", "text-embedding-3-small")],
    "text-embedding-3-large": [("openai", "text-embedding-3-large")],
    "text-embedding-ada-002": [("openai", "text-embedding-ada-002")],
}


def api_key_setting(provider: str) -> str:
    """Where a provider's API key is set: ``OPENAI_API_KEY`` for a built-in name, else its entry in the YAML file."""
    if provider in PUBLIC_BASE_URLS:
        return f"{provider.upper()}_API_KEY"
    return f"providers.{provider}.api_key in GATEWAY_CONFIG"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending field."""


# No model costs near this (o1-pro's output, among the dearest, is $600); below it, a reservation of 90 million
# tokens still fits the budget counters' exact range (whole nano-dollars below 2^53).
MAX_PRICE_PER_MTOK = Decimal(100_000)


class PriceConfig(BaseModel):
    """A ``price:`` block: US dollars per million tokens, read as exact decimals (YAML's ``0.15`` is 0.15).

    On a deployment it wins over genai-prices; on a provider it prices each of its models without one of its own.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: Decimal = Field(ge=0, le=MAX_PRICE_PER_MTOK)
    output_per_mtok: Decimal = Field(ge=0, le=MAX_PRICE_PER_MTOK)
    cached_input_per_mtok: Decimal | None = Field(None, ge=0, le=MAX_PRICE_PER_MTOK)  # unset: the input price

    @field_validator("input_per_mtok", "output_per_mtok", "cached_input_per_mtok")
    @classmethod
    def _no_negative_zero(cls, value: Decimal | None) -> Decimal | None:
        return Decimal(0) if value is not None and value.is_zero() else value  # -0 would print as "-0.000000"

    def to_price(self) -> Price:
        return Price(self.input_per_mtok, self.output_per_mtok, self.cached_input_per_mtok)


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ProviderType
    api_key: SecretStr | None = None
    base_url: str = ""
    # Azure OpenAI: ``api_version`` puts calls on the deployment URL (``…/openai/deployments/{model}/…?api-version=``);
    # unset, on Azure's v1 path (``…/openai/v1/…``). ``azure_ad_token``: a Microsoft Entra ID token, sent as a bearer
    # token instead of ``api-key``.
    api_version: str | None = None
    azure_ad_token: SecretStr | None = None
    # AWS Bedrock: the region (AWS_REGION / AWS_DEFAULT_REGION when unset), and credentials: ``api_key`` (a Bedrock
    # API key; AWS_BEARER_TOKEN_BEDROCK), else these access keys, else the standard AWS chain (``aws_profile`` picks
    # a profile of the shared files; environment, roles).
    region: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    aws_profile: str | None = None
    # Vertex AI: the project and location (GOOGLE_CLOUD_PROJECT / GOOGLE_CLOUD_LOCATION when unset), and a
    # service-account key file (unset: Google's application default credentials).
    project: str | None = None
    location: str | None = None
    credentials_file: str | None = None
    # Extra headers sent on every upstream call (e.g. OpenAI-Organization, api-version).
    headers: dict[str, str] = Field(default_factory=dict)
    # Anthropic requires max_tokens; this fills it when the caller sent none.
    default_max_tokens: int = Field(4096, ge=1)
    # The name an OpenAI-compatible server takes for the completion cap the gateway always sends: OpenAI,
    # Groq and vLLM take max_completion_tokens; older servers (Ollama, llama.cpp) know only max_tokens.
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    # Whether a stream is sent ``stream_options: {include_usage: true}`` (how the gateway learns a stream's usage):
    # "omit" for a server that refuses the field and sends the usage in its last chunk unasked (Mistral).
    stream_options: Literal["send", "omit"] = "send"
    # The Responses API (/v1/responses): passed through to a server that implements it ("native"), or translated
    # to Chat Completions; unset, only the provider named ``openai`` of type ``openai`` is native.
    responses: Literal["native", "translated"] | None = None
    # The price of each of its models that has none of its own (a self-hosted server, where every model costs
    # the same, or nothing: a price of 0 says so, where no price would log the models as unpriced).
    price: PriceConfig | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("responses")
    @classmethod
    def _native_needs_openai_wire(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value == "native" and info.data.get("type") != "openai":
            raise ValueError("'native' needs a provider of type openai (only OpenAI's wire has /v1/responses)")
        return value

    @model_validator(mode="after")
    def _fields_of_its_type(self) -> ProviderConfig:
        for kind, names in _TYPE_FIELDS.items():
            if kind == self.type:
                continue
            for name in names:
                if getattr(self, name) is not None:
                    raise ValueError(f"'{name}' is a setting of type {kind} providers, not of type {self.type}")
        if self.type == "azure" and self.api_key and self.azure_ad_token:
            raise ValueError("set api_key or azure_ad_token, not both")
        if self.type == "bedrock" and bool(self.aws_access_key_id) != bool(self.aws_secret_access_key):
            raise ValueError("set both aws_access_key_id and aws_secret_access_key, or neither")
        return self

    def native_responses(self, name: str) -> bool:
        """Whether the provider called ``name`` takes the Responses API natively (``POST <base_url>/responses``)."""
        if self.responses is not None:
            return self.responses == "native"
        return name == "openai" and self.type == "openai"

    @property
    def usable(self) -> bool:
        """Whether the provider has credentials to call with: a key, or (Bedrock, Vertex AI) a cloud's
        credential chain, which the adapter resolves at start-up (and refuses to start without)."""
        if self.type in ("bedrock", "vertex"):
            return True
        if self.type == "azure" and self.azure_ad_token and self.azure_ad_token.get_secret_value():
            return True
        return bool(self.api_key and self.api_key.get_secret_value())


class Deployment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    price: PriceConfig | None = None  # wins over the provider's price and over genai-prices

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"


class ModelFile(BaseModel):
    """The YAML file's shape."""

    model_config = ConfigDict(extra="forbid")

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, Annotated[list[Deployment], Field(min_length=1)]] = Field(default_factory=dict)


# An empty variable (``ADMIN_API_KEY=``) means "unset", as in most deployment tools.
_UNSET_WHEN_EMPTY = (
    "jwt_secret",
    "jwt_public_key",
    "jwt_jwks_url",
    "jwt_issuer",
    "jwt_audience",
    "admin_api_key",
    "redis_url",
    "default_monthly_budget_usd",
)
# The largest monthly US dollar budget: the limits count whole nano-dollars, exact below 2^53 (about $9M) in
# Redis's Lua, and a counter must have room above its budget for what requests in flight hold.
MAX_BUDGET_USD = Decimal(5_000_000)


class Settings(BaseModel):
    """Environment variables (names as in DESIGN.md, lower-cased). Secrets are SecretStr: repr never shows them.

    A plain model fed by ``load_settings(env)``, so tests pass an environment in and nothing
    reads ``os.environ`` behind their back.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(5000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)

    redis_url: SecretStr | None = None
    # Starts every Redis key and channel, so several gateways or test runs can share one Redis.
    redis_prefix: str = Field("llmgw:", max_length=64)
    database_url: SecretStr = SecretStr("sqlite:///./gateway.db")

    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"] = "HS256"
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: float = Field(30.0, ge=0, le=300)

    admin_api_key: SecretStr | None = None
    allow_anonymous: bool = True
    trusted_proxies: list[str] = Field(default_factory=list)
    # How long a resolved API key (or a JWT user's overrides) is reused without a database query,
    # while Redis pub/sub carries revocations; without it (or while it is down) the gateway uses 1 s.
    key_cache_ttl_seconds: float = Field(30.0, ge=0, le=3600)

    rate_limit_per_minute: int = Field(60, ge=0)
    anon_rate_limit_per_minute: int = Field(10, ge=0)
    default_monthly_token_budget: int = Field(1_000_000, ge=0)
    anon_monthly_token_budget: int = Field(10_000, ge=0)
    # A user's monthly budget in US dollars unless the user has one of their own; unset: none (token budgets only).
    default_monthly_budget_usd: Decimal | None = Field(None, ge=0, le=MAX_BUDGET_USD, decimal_places=6)
    # Completion tokens reserved for a request without max_tokens; sent upstream as its limit only when
    # the budget's remainder is smaller (a larger number could exceed what the model accepts).
    default_completion_allowance: int = Field(4096, ge=1)
    # When Redis fails, limits refuse (closed: budgets hold) or admit unmetered (open: availability first).
    limits_on_redis_error: Literal["open", "closed"] = "closed"
    limits_redis_timeout_seconds: float = Field(0.5, gt=0, le=30)

    cache_ttl_seconds: int = Field(300, ge=0)
    cache_scope: Literal["user", "global"] = "user"
    cache_enabled: bool = True
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=0)  # the in-process cache's bound (embedded mode)
    cache_redis_timeout_seconds: float = Field(0.05, gt=0, le=5)
    cache_redis_open_seconds: float = Field(5.0, ge=0, le=300)  # how long to stop trying a failing Redis

    # How long POST /v1/responses answers are kept for previous_response_id and GET (unless store is false).
    responses_ttl_days: int = Field(30, ge=1, le=3650)

    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    groq_api_key: SecretStr | None = None
    gemini_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_base_url: str | None = None
    groq_base_url: str | None = None
    gemini_base_url: str | None = None

    helicone_api_key: SecretStr | None = None
    helicone_base_url: str = "https://api.worker.helicone.ai"
    helicone_queue_size: int = Field(1000, ge=1)
    helicone_batch_size: int = Field(16, ge=1, le=256)
    helicone_timeout_seconds: float = Field(5.0, gt=0, le=120)
    helicone_log_content: bool = True

    telemetry_record_content: bool = False  # prompts and answers on spans: off unless asked for
    telemetry_user_id: Literal["hash", "plain", "omit"] = "hash"
    telemetry_user_id_salt: SecretStr = SecretStr("")
    prometheus_multiproc_dir: str | None = None

    gateway_config: str | None = None

    cors_origins: list[str] = Field(default_factory=list)
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # Bounds on what one caller or one upstream may make the gateway hold (README, "Bounds").
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024)  # an upstream answer, streamed or not
    max_sse_line_bytes: int = Field(1024 * 1024, ge=1024)  # one line of an upstream event stream
    max_choices: int = Field(16, ge=1, le=128)  # the largest ``n`` a chat request may ask for
    max_request_header_bytes: int = Field(64 * 1024, ge=4096)  # a request's header block, all lines together
    request_header_timeout_seconds: float = Field(10.0, gt=0, le=300)  # time to send the whole header block
    upstream_idle_seconds: float = Field(30.0, gt=0, le=3600)  # an idle pooled upstream connection is closed after
    upstream_max_idle_connections: int = Field(256, ge=0)  # idle pooled connections kept per provider
    upstream_timeout_seconds: float = Field(600.0, gt=0)
    request_timeout_seconds: float = Field(900.0, gt=0)

    cooldown_failures: int = Field(3, ge=1)
    cooldown_seconds: float = Field(30.0, ge=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"'{item}' is not an IP address or CIDR network") from None
        return value

    @field_validator(*_UNSET_WHEN_EMPTY, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class GatewayConfig(BaseModel):
    """Settings plus the resolved providers and model groups: what `create_app` receives."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    settings: Settings
    providers: dict[str, ProviderConfig]
    models: dict[str, list[Deployment]]
    source: str  # where the model groups came from: a file path or "built-in"
    otel_env: dict[str, str] = {}  # the standard OTEL_* variables, handed to the OpenTelemetry set-up as they are


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` inside every string of a parsed YAML tree; unset variables expand to ''."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [expand_env(item, env) for item in value]
    if isinstance(value, dict):
        return {key: expand_env(item, env) for key, item in value.items()}
    return value


def _describe(error: ValidationError, *, env_names: bool = False) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(root)"
        parts.append(f"{field.upper() if env_names else field}: {item['msg']}")
    return "; ".join(parts)


def _read_model_file(path: Path, env: Mapping[str, str]) -> ModelFile:
    import yaml  # here: ~25 ms of start-up that the built-in model groups do without

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read model file: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with 'providers' and 'models'")
    try:
        return ModelFile.model_validate(expand_env(raw, env))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None


def _builtin_model_file() -> ModelFile:
    groups = DEFAULT_MODEL_GROUPS.items()
    return ModelFile.model_validate(
        {
            "providers": {name: {"type": kind} for name, kind in BUILTIN_PROVIDER_TYPES.items()},
            "models": {group: [{"provider": p, "model": m} for p, m in chain] for group, chain in groups},
        }
    )


def _with_env_defaults(
    name: str, provider: ProviderConfig, settings: Settings, env: Mapping[str, str]
) -> ProviderConfig:
    """YAML first, then OPENAI_/ANTHROPIC_/GROQ_/GEMINI_ variables for the built-in names (and the clouds' standard
    variables for Bedrock and Vertex AI), then the public URL."""
    if provider.type in ("bedrock", "vertex"):
        return _cloud_defaults(name, provider, env)
    if name not in PUBLIC_BASE_URLS:
        if provider.type in TYPE_BASE_URLS and not provider.base_url:
            return provider.model_copy(update={"base_url": TYPE_BASE_URLS[provider.type]})
        if not provider.base_url:
            raise ConfigError(f"providers.{name}.base_url: required for a provider of type {provider.type}")
        return provider
    env_key: SecretStr | None = getattr(settings, f"{name}_api_key")
    env_url: str | None = getattr(settings, f"{name}_base_url")
    api_key = provider.api_key if provider.api_key and provider.api_key.get_secret_value() else env_key
    base_url = provider.base_url or (env_url or "").rstrip("/") or PUBLIC_BASE_URLS[name]
    return provider.model_copy(update={"api_key": api_key, "base_url": base_url})


def _cloud_defaults(name: str, provider: ProviderConfig, env: Mapping[str, str]) -> ProviderConfig:
    """Bedrock's region and API key, Vertex AI's project and location: the YAML's, else the cloud's variables."""
    if provider.type == "bedrock":
        region = provider.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            raise ConfigError(f"providers.{name}.region: required (or AWS_REGION) for a provider of type bedrock")
        api_key = provider.api_key
        if not (api_key and api_key.get_secret_value()) and env.get("AWS_BEARER_TOKEN_BEDROCK"):
            api_key = SecretStr(env["AWS_BEARER_TOKEN_BEDROCK"])
        return provider.model_copy(update={"region": region, "api_key": api_key})
    project = provider.project or env.get("GOOGLE_CLOUD_PROJECT")
    location = provider.location or env.get("GOOGLE_CLOUD_LOCATION")
    for field, value, variable in (
        ("project", project, "GOOGLE_CLOUD_PROJECT"),
        ("location", location, "GOOGLE_CLOUD_LOCATION"),
    ):
        if not value:
            raise ConfigError(f"providers.{name}.{field}: required (or {variable}) for a provider of type vertex")
    return provider.model_copy(update={"project": project, "location": location})


# Provider types whose client library is an optional extra: type -> (the module it needs, the extra that installs it).
PROVIDER_EXTRAS = {"bedrock": ("botocore", "bedrock"), "vertex": ("google.auth", "vertex")}


def _check_extras(providers: Mapping[str, ProviderConfig]) -> None:
    """A provider whose library is not installed stops start-up here, naming the extra, not at its first request."""
    import importlib.util

    for name, provider in providers.items():
        needed = PROVIDER_EXTRAS.get(provider.type)
        if needed is None:
            continue
        module, extra = needed
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package (``google``) is missing
            found = False
        if not found:
            raise ConfigError(
                f"providers.{name}: type {provider.type} needs {module}, which is not installed: "
                f"pip install 'llm-gateway[{extra}]'"
            )


def _check_one_price_per_deployment(models: Mapping[str, list[Deployment]]) -> None:
    """A provider/model costs the same in every group that lists it: its answers are priced by that pair alone."""
    priced: dict[str, tuple[str, PriceConfig]] = {}
    for group, chain in models.items():
        for index, deployment in enumerate(chain):
            if deployment.price is None:
                continue
            where = f"models.{group}.{index}.price"
            first = priced.setdefault(deployment.key, (where, deployment.price))
            if first[1] != deployment.price:
                raise ConfigError(f"{where}: {deployment.key} has another price in {first[0]}")


def load_settings(env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Build the whole configuration once; raise ConfigError naming the first bad field."""
    env = dict(os.environ if env is None else env)
    try:
        settings = Settings.model_validate({k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, env_names=True)) from None

    path = Path(settings.gateway_config) if settings.gateway_config else Path("gateway.yaml")
    if path.exists():
        model_file, source = _read_model_file(path, env), str(path)
    elif settings.gateway_config:
        raise ConfigError(f"GATEWAY_CONFIG: file not found: {path}")
    else:
        model_file, source = _builtin_model_file(), "built-in"

    providers = {name: _with_env_defaults(name, cfg, settings, env) for name, cfg in model_file.providers.items()}
    for group, chain in model_file.models.items():
        for index, deployment in enumerate(chain):
            if deployment.provider not in providers:
                raise ConfigError(f"models.{group}.{index}.provider: unknown provider '{deployment.provider}'")
    _check_one_price_per_deployment(model_file.models)
    _check_extras(providers)
    if settings.jwt_algorithm.startswith("HS") and (settings.jwt_public_key or settings.jwt_jwks_url):
        raise ConfigError("JWT_ALGORITHM: JWT_PUBLIC_KEY/JWT_JWKS_URL need an asymmetric algorithm (RS256/ES256)")
    if not settings.jwt_algorithm.startswith("HS") and bool(settings.jwt_public_key) == bool(settings.jwt_jwks_url):
        raise ConfigError(f"JWT_ALGORITHM={settings.jwt_algorithm}: set exactly one of JWT_PUBLIC_KEY and JWT_JWKS_URL")
    otel_env = {name: value for name, value in env.items() if name.startswith("OTEL_")}
    return GatewayConfig(
        settings=settings, providers=providers, models=model_file.models, source=source, otel_env=otel_env
    )

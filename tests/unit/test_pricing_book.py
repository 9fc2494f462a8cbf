"""The price book: YAML prices win, genai-prices prices the known models as it prices them itself, an unpriced
deployment is named once and counted every time, and a group reserves at its dearest deployment."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from decimal import Decimal
from typing import Any

import pytest
from genai_prices.data_snapshot import DataSnapshot, set_custom_snapshot

from llm_gateway import pricing_book
from llm_gateway.pricing import Price, ReservePrice
from llm_gateway.pricing_book import PriceBook
from llm_gateway.pricing_catalogue import Catalogue
from llm_gateway.schemas.core import Usage
from llm_gateway.settings import PUBLIC_BASE_URLS, Deployment, ProviderConfig, load_settings
from tests.pricing_support import genai_cost

LOGGER = "llm_gateway.pricing_book"
PUBLIC = {
    "openai": ProviderConfig(type="openai", base_url=PUBLIC_BASE_URLS["openai"]),
    "anthropic": ProviderConfig(type="anthropic", base_url=PUBLIC_BASE_URLS["anthropic"]),
    "groq": ProviderConfig(type="openai", base_url=PUBLIC_BASE_URLS["groq"]),
}
LOCAL = ProviderConfig(type="openai", base_url="http://127.0.0.1:8000/v1")


def deployment(provider: str, model: str, price: dict[str, Any] | None = None) -> Deployment:
    return Deployment.model_validate({"provider": provider, "model": model, "price": price})


def priced(provider: ProviderConfig, price: dict[str, Any]) -> ProviderConfig:
    return ProviderConfig.model_validate({**provider.model_dump(), "price": price})


def book(
    groups: dict[str, list[Deployment]], providers: dict[str, ProviderConfig] | None = None, **kw: Any
) -> PriceBook:
    return PriceBook(PUBLIC if providers is None else providers, groups, **kw)


# Below the lowest long-context tier of genai-prices' data (32K prompt tokens), with a cached part.
USAGE = Usage(prompt_tokens=23_457, completion_tokens=891, cached_tokens=20_000)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4.1"),
        ("openai", "text-embedding-3-small"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-3-5-haiku-latest"),
        ("groq", "llama-3.3-70b-versatile"),
        ("groq", "openai/gpt-oss-20b"),
    ],
)
def test_a_known_model_costs_what_genai_prices_says(provider: str, model: str) -> None:
    prices = book({"g": [deployment(provider, model)]})
    price = prices.price(provider, model)
    assert price is not None
    assert price.cost(USAGE) == genai_cost(USAGE, model, provider_id=provider) > 0
    assert prices.unpriced == set()


def test_a_provider_is_known_by_its_base_url_whatever_its_name() -> None:
    providers = {"tg": ProviderConfig(type="openai", base_url="https://api.together.xyz/v1")}
    prices = book({"g": [deployment("tg", "Gryphe/MythoMax-L2-13b")]}, providers)
    price = prices.price("tg", "Gryphe/MythoMax-L2-13b")
    assert price is not None
    expected = genai_cost(USAGE, "Gryphe/MythoMax-L2-13b", provider_api_url="https://api.together.xyz/v1")
    assert price.cost(USAGE) == expected > 0


@pytest.mark.parametrize(
    ("name", "base_url", "vendor"),
    [
        ("groq", PUBLIC_BASE_URLS["groq"], "groq"),
        ("openai", "http://127.0.0.1:9/v1", "openai"),  # a proxy or a test double of OpenAI keeps its prices
        ("mine", "https://myres.openai.azure.com/openai", "azure"),
        ("deepseek", "https://api.deepseek.com", "deepseek"),
        ("local", "http://127.0.0.1:11434/v1", None),
        ("openai-compatible-vllm", "http://10.0.0.5:8000/v1", None),  # no guessing from a name that says "openai"
    ],
)
def test_vendor_by_base_url_then_exact_name(name: str, base_url: str, vendor: str | None) -> None:
    assert Catalogue().vendor(name, base_url) == vendor


def test_a_deployment_price_wins_over_the_provider_price_which_wins_over_genai_prices() -> None:
    own = {"input_per_mtok": "1.5", "output_per_mtok": 2}
    providers = {
        **PUBLIC,
        "local": priced(LOCAL, {"input_per_mtok": 0, "output_per_mtok": 0}),
        "openai": priced(PUBLIC["openai"], {"input_per_mtok": 7, "output_per_mtok": 9}),
    }
    groups = {
        "a": [deployment("anthropic", "claude-sonnet-4-5", own), deployment("local", "llama3.2:3b")],
        "b": [deployment("openai", "gpt-4o-mini"), deployment("local", "qwen3:8b", own)],
    }
    prices = book(groups, providers)
    assert prices.price("anthropic", "claude-sonnet-4-5") == Price(Decimal("1.5"), Decimal(2))
    assert prices.price("local", "qwen3:8b") == Price(Decimal("1.5"), Decimal(2))
    assert prices.price("local", "llama3.2:3b") == Price(Decimal(0), Decimal(0))  # free, said so: not unpriced
    assert prices.price("openai", "gpt-4o-mini") == Price(Decimal(7), Decimal(9))
    assert prices.price("local", "any-model-by-direct-route") == Price(Decimal(0), Decimal(0))
    assert prices.unpriced == set()


def test_a_deployment_priced_in_one_group_costs_the_same_in_another() -> None:
    groups = {
        "a": [deployment("openai", "gpt-4o-mini")],
        "b": [deployment("openai", "gpt-4o-mini", {"input_per_mtok": 1, "output_per_mtok": 1})],
    }
    assert book(groups).price("openai", "gpt-4o-mini") == Price(Decimal(1), Decimal(1))


def test_an_unknown_model_is_unpriced_named_once_and_counted_each_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    counted: list[tuple[str, str]] = []
    groups = {"g": [deployment("openai", "gpt-nonesuch-9"), deployment("local", "llama3.2:3b")]}
    prices = book(groups, {**PUBLIC, "local": LOCAL}, on_unpriced=lambda p, m: counted.append((p, m)))
    assert prices.unpriced == {"openai/gpt-nonesuch-9", "local/llama3.2:3b"}
    assert [r.getMessage() for r in caplog.records] == [
        "pricing: openai/gpt-nonesuch-9 has no price (genai-prices has no token price for it at 'openai'): it costs 0;"
        " give it a price: in the YAML",
        "pricing: local/llama3.2:3b has no price (its provider is no known vendor): it costs 0;"
        " give it a price: in the YAML",
    ]
    caplog.clear()
    for _ in range(3):
        assert prices.price("openai", "gpt-nonesuch-9") is None
    assert prices.price("anthropic", "claude-nonesuch") is None  # a direct route: named on its first answer
    assert prices.price("anthropic", "claude-nonesuch") is None
    assert counted == [("openai", "gpt-nonesuch-9")] * 3 + [("anthropic", "claude-nonesuch")] * 2
    assert [r.getMessage().split(" has ")[0] for r in caplog.records] == ["pricing: anthropic/claude-nonesuch"]
    assert prices.unpriced == {"openai/gpt-nonesuch-9", "local/llama3.2:3b", "anthropic/claude-nonesuch"}


def test_a_direct_route_is_looked_up_once_and_kept() -> None:
    prices = book({})
    looked_up: list[tuple[str, str]] = []
    real = prices._catalogue.price

    def counting(vendor: str, model: str) -> Price | None:
        looked_up.append((vendor, model))
        return real(vendor, model)

    prices._catalogue.price = counting  # type: ignore[method-assign]
    first = prices.price("anthropic", "claude-opus-4-1")
    assert first is not None and first.cost(USAGE) == genai_cost(USAGE, "claude-opus-4-1", provider_id="anthropic")
    assert prices.price("anthropic", "claude-opus-4-1") == first
    assert prices.reserve_price("claude-opus-4-1", [deployment("anthropic", "claude-opus-4-1")]) == first.reserve()
    assert looked_up == [("anthropic", "claude-opus-4-1")]


def test_direct_routes_and_unpriced_names_are_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setattr(pricing_book, "DIRECT_ROUTES_KEPT", 4)
    prices = book({})
    for n in range(10):
        assert prices.price("openai", f"gpt-nonesuch-{n}") is None
        prices.reserve_price(f"openai/gpt-nonesuch-{n}", [deployment("openai", f"gpt-nonesuch-{n}")])
    assert len(prices._direct) <= 4 and len(prices._reserves) <= 4
    assert prices.unpriced == {f"openai/gpt-nonesuch-{n}" for n in range(4)}
    assert len(caplog.records) == 5
    assert caplog.records[-1].getMessage() == "pricing: 4 unpriced deployments named; any more cost 0 unnamed"


def test_reserve_price_is_the_dearest_of_each_side_of_the_chain_and_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    chain = [
        deployment("openai", "a", {"input_per_mtok": "2.5", "output_per_mtok": 10}),
        deployment("anthropic", "b", {"input_per_mtok": 3, "output_per_mtok": "0.0015"}),
        deployment("groq", "c", {"input_per_mtok": "0.05", "output_per_mtok": 15}),
        deployment("openai", "gpt-nonesuch-9"),  # unpriced: costs 0, so it never raises the reservation
    ]
    prices = book({"g": chain, "free": [chain[3]]})
    assert prices.reserve_price("g", chain) == ReservePrice(input_nano=3_000, output_nano=15_000)
    assert prices.reserve_price("g", []) == ReservePrice(3_000, 15_000)  # kept per group
    assert prices.reserve_price("free", [chain[3]]) is None
    assert prices.reserve_price("anthropic/claude-nonesuch", [deployment("anthropic", "claude-nonesuch")]) is None
    assert "anthropic/claude-nonesuch" not in prices.unpriced  # reserving names nothing: the model may not exist


def test_reserve_price_rounds_a_fraction_of_a_nano_dollar_up() -> None:
    chain = [deployment("local", "m", {"input_per_mtok": "0.0001", "output_per_mtok": "0.0015"})]
    assert book({"g": chain}, {"local": LOCAL}).reserve_price("g", chain) == ReservePrice(1, 2)


def test_from_config_looks_up_only_providers_with_a_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    prices = PriceBook.from_config(load_settings({"GATEWAY_CONFIG": "", "OPENAI_API_KEY": "sk-test"}))
    assert prices.price("openai", "gpt-4o") is not None
    assert ("anthropic", "claude-sonnet-4-5") not in prices._configured
    assert caplog.records == [] and prices.unpriced == set()


def test_every_built_in_deployment_is_priced() -> None:
    config = load_settings({"GATEWAY_CONFIG": "", "OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "GROQ_API_KEY": "k"})
    prices = PriceBook.from_config(config)
    assert prices.unpriced == set()
    assert all(prices.reserve_price(group, chain) is not None for group, chain in config.models.items())


def test_prices_come_from_the_bundled_data_never_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object) -> None:
        raise AssertionError("genai-prices tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    # A process-wide snapshot that something else fetched (genai-prices' UpdatePrices) is not what the gateway uses.
    set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    try:
        prices = book({"g": [deployment("openai", "gpt-4o-mini")]})
    finally:
        set_custom_snapshot(None)
    assert prices.price("openai", "gpt-4o-mini") is not None
    assert not any(thread.name.startswith("genai_prices") for thread in threading.enumerate())


def test_importing_the_book_leaves_genai_prices_for_start_up() -> None:
    probe = "import sys, llm_gateway.app, llm_gateway.pricing_book; print('genai_prices' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("kind", "base_url", "vendor"),
    [
        ("bedrock", "", "aws"),  # the endpoint comes from the region
        ("bedrock", "http://127.0.0.1:9", "aws"),  # a proxy or a fake of Bedrock: still AWS's prices
        ("azure", "http://127.0.0.1:9", "azure"),
        ("gemini", "https://generativelanguage.googleapis.com", "google"),
        ("vertex", "", "google"),
    ],
)
def test_a_cloud_type_is_its_vendor_whatever_the_url(kind: str, base_url: str, vendor: str) -> None:
    assert Catalogue().vendor("mine", base_url, kind) == vendor


@pytest.mark.parametrize(
    ("vendor", "model"),
    [
        ("aws", "anthropic.claude-3-haiku-20240307-v1:0"),  # Bedrock's model ids
        ("aws", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),  # ... and its cross-region inference profiles
        ("azure", "gpt-4o-mini"),
        ("google", "gemini-2.5-flash"),
    ],
)
def test_the_clouds_model_names_are_priced_from_genai_prices(vendor: str, model: str) -> None:
    price = Catalogue().price(vendor, model)
    assert price is not None and price.input_per_mtok > 0 and price.output_per_mtok > 0

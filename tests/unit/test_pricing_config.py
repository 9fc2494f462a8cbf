"""``price:`` in the YAML, on a deployment or a provider: exact decimals, and a start-up error naming a bad field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from llm_gateway.pricing import Price
from llm_gateway.settings import ConfigError, GatewayConfig, load_settings

HEAD = """
providers:
  openai: {type: openai, api_key: sk-test}
  local: {type: openai, api_key: none, base_url: "http://127.0.0.1:8000/v1"PROVIDER_PRICE}
models:
  house:
    - {provider: local, model: llama3.2:3b, price: PRICE}
"""


def load(tmp_path: Path, price: str, provider_price: str = "", env: dict[str, str] | None = None) -> GatewayConfig:
    path = tmp_path / "gateway.yaml"
    text = HEAD.replace("PROVIDER_PRICE", f", price: {provider_price}" if provider_price else "")
    path.write_text(text.replace("PRICE", price))
    return load_settings({"GATEWAY_CONFIG": str(path), **(env or {})})


def test_a_deployment_price_is_read_as_the_exact_decimals_written(tmp_path: Path) -> None:
    config = load(tmp_path, "{input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: 0.075}")
    price = config.models["house"][0].price
    assert price is not None
    assert price.to_price() == Price(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))
    assert str(price.input_per_mtok) == "0.15"  # not 0.1499999999999999944488848768742172978818416595458984375


def test_quoted_values_env_expansion_and_no_cached_price(tmp_path: Path) -> None:
    config = load(tmp_path, '{input_per_mtok: "${IN}", output_per_mtok: "1e-7"}', env={"IN": "0.3"})
    price = config.models["house"][0].price
    assert price is not None and price.to_price() == Price(Decimal("0.3"), Decimal("1E-7"), None)


def test_a_provider_price(tmp_path: Path) -> None:
    config = load(tmp_path, "null", provider_price="{input_per_mtok: 0, output_per_mtok: -0.0}")
    price = config.providers["local"].price
    assert price is not None and price.to_price() == Price(Decimal(0), Decimal(0))
    assert not price.output_per_mtok.is_signed()  # -0 is 0: a cost never prints as "-0.000000"
    assert config.models["house"][0].price is None


@pytest.mark.parametrize(
    ("price", "message"),
    [
        (
            "{input_per_mtok: -1, output_per_mtok: 1}",
            "models.house.0.price.input_per_mtok: Input should be greater than or equal to 0",
        ),
        (
            "{input_per_mtok: 1, output_per_mtok: cheap}",
            "models.house.0.price.output_per_mtok: Input should be a valid decimal",
        ),
        (
            "{input_per_mtok: 1, output_per_mtok: .nan}",
            "models.house.0.price.output_per_mtok: Input should be a finite number",
        ),
        ("{input_per_mtok: 1}", "models.house.0.price.output_per_mtok: Field required"),
        (
            "{input: 1, input_per_mtok: 1, output_per_mtok: 1}",
            "models.house.0.price.input: Extra inputs are not permitted",
        ),
        (
            "{input_per_mtok: 1, output_per_mtok: 1, cached_input_per_mtok: true}",
            "models.house.0.price.cached_input_per_mtok: Decimal input should be an integer, float, string or Decimal",
        ),
        (
            "{input_per_mtok: 150000, output_per_mtok: 1}",
            "models.house.0.price.input_per_mtok: Input should be less than or equal to 100000",
        ),
        ("0.15", "models.house.0.price: Input should be a valid dictionary or instance of PriceConfig"),
    ],
)
def test_a_bad_price_is_a_start_up_error_naming_the_field(tmp_path: Path, price: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, price)
    assert message in str(caught.value)


def test_a_bad_provider_price_names_the_provider(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"providers\.local\.price\.input_per_mtok: Field required"):
        load(tmp_path, "null", provider_price="{output_per_mtok: 1}")


def test_one_deployment_with_two_prices_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        """
providers:
  openai: {type: openai, api_key: sk-test}
models:
  a:
    - {provider: openai, model: gpt-4o-mini, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
  b:
    - {provider: openai, model: gpt-4o-mini}
  c:
    - {provider: openai, model: gpt-4o-mini, price: {input_per_mtok: "0.150", output_per_mtok: "0.60"}}
  d:
    - {provider: openai, model: gpt-4o-mini, price: {input_per_mtok: 0.16, output_per_mtok: 0.6}}
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_settings({"GATEWAY_CONFIG": str(path)})
    assert str(caught.value) == "models.d.0.price: openai/gpt-4o-mini has another price in models.a.0.price"

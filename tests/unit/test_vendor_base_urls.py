"""Each OpenAI-compatible vendor's public ``base_url`` (as the README gives it) is priced as the right genai-prices
vendor, and that vendor has a price for the model the README's example names; the self-hosted servers (Ollama,
vLLM) are no vendor genai-prices knows."""

from __future__ import annotations

import pytest

from llm_gateway.pricing_catalogue import Catalogue
from tests.vendor_support import VENDORS, Vendor


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue()


@pytest.mark.parametrize("vendor", VENDORS, ids=[v.name for v in VENDORS])
def test_a_vendors_base_url_is_priced_as_that_vendor(catalogue: Catalogue, vendor: Vendor) -> None:
    # the provider's name plays no part once the URL is known (a local server is named anything)
    assert catalogue.vendor("my-provider", vendor.base_url) == vendor.prices_as
    if vendor.prices_as is not None:
        assert catalogue.price(vendor.prices_as, vendor.model) is not None


def test_the_v1_suffix_of_a_base_url_does_not_change_its_vendor(catalogue: Catalogue) -> None:
    assert catalogue.vendor("x", "https://api.deepseek.com/v1") == "deepseek"
    assert catalogue.vendor("x", "https://generativelanguage.googleapis.com/v1beta/openai/") == "google"


def test_an_azure_resource_is_azure_whatever_its_path(catalogue: Catalogue) -> None:
    assert catalogue.vendor("prod", "https://contoso.openai.azure.com", "azure") == "azure"
    assert catalogue.vendor("prod", "http://127.0.0.1:9999", "azure") == "azure"  # a proxy or a fake: the type says
    assert catalogue.price("azure", "gpt-4o") is not None

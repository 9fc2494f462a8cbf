"""The prices that genai-prices publishes, per vendor and model, from the data bundled in the package.

genai-prices can also fetch newer prices over the network (``UpdatePrices``), and its ``calc_price`` then uses
whatever the process fetched last. The gateway reads its own snapshot of the bundled data and never starts an
update: prices change with the package's version (pinned in requirements.lock), and start-up never waits on
the network.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from llm_gateway.pricing import Price

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import PriceCalculation

# A small request, below every long-context tier (the lowest in the data starts at 32K prompt tokens), so
# the probe reads each model's base price: a ``Price`` has one input and one output price, not tiers.
_PROBE_TOKENS = 1_000
_PROBES_PER_MTOK = Decimal(1_000_000 // _PROBE_TOKENS)
_ONE = Decimal(1)


# The provider types that only one vendor speaks -> that vendor's id in genai-prices.
CLOUD_VENDORS = {"azure": "azure", "bedrock": "aws", "gemini": "google", "vertex": "google"}


class Catalogue:
    """genai-prices' bundled prices, as of ``at`` (start-up: a price that changes on a date applies after a restart)."""

    def __init__(self, at: datetime | None = None) -> None:
        # Here, not at module level: ~50 ms to import, once a process (its data module is 1.6 MB of Python).
        from genai_prices import data
        from genai_prices.data_snapshot import DataSnapshot

        self._snapshot: DataSnapshot = DataSnapshot(providers=data.providers, from_auto_update=False)
        self._vendor_ids = frozenset(provider.id for provider in data.providers)
        self._at = at if at is not None else datetime.now(UTC)

    def vendor(self, name: str, base_url: str, kind: str = "openai") -> str | None:
        """genai-prices' id of the vendor that a provider reaches: by its ``base_url``
        (``https://api.together.xyz/v1`` -> ``together``), else the cloud its ``kind`` belongs to (``bedrock`` ->
        ``aws``), else its name when that is an id exactly (``openai``, ``anthropic``, ``groq``); None for a
        self-hosted or unknown server. Never by the ``openai`` or ``anthropic`` type: that is a wire format that many
        vendors and servers speak, not a vendor."""
        if base_url:
            try:
                return self._snapshot.find_provider(None, None, base_url).id
            except LookupError:
                pass
        if kind in CLOUD_VENDORS:  # a cloud's own wire: the type is the vendor, whatever the URL (a proxy, a fake)
            return CLOUD_VENDORS[kind]
        lowered = name.lower()
        return lowered if lowered in self._vendor_ids else None

    def price(self, vendor: str, model: str) -> Price | None:
        """Per million tokens, as genai-prices prices a small request to ``model`` at ``vendor`` (its own model
        matching: ``claude-3-5-haiku-latest``, dated names, another vendor's models that ``vendor`` resells); None
        when it knows no such model, or no token price for it (priced per request, per second or image)."""
        from genai_prices import Usage

        try:
            plain = self._calc(Usage(input_tokens=_PROBE_TOKENS, output_tokens=_PROBE_TOKENS), vendor, model)
            cached = self._calc(Usage(input_tokens=_PROBE_TOKENS, cache_read_tokens=_PROBE_TOKENS), vendor, model)
        except (LookupError, ValueError):  # unknown model; or usage its data cannot price (none today: a new quirk)
            return None
        if plain.input_price.is_zero() and plain.output_price.is_zero():
            return None
        return Price(_per_mtok(plain.input_price), _per_mtok(plain.output_price), _per_mtok(cached.input_price))

    def _calc(self, usage: object, vendor: str, model: str) -> PriceCalculation:
        return self._snapshot.calc(usage, model, vendor, None, self._at)


def _per_mtok(probe_cost: Decimal) -> Decimal:
    """The probe's cost scaled to a million tokens, without trailing zeros (``0.15``, ``10``): exact."""
    per_mtok = (probe_cost * _PROBES_PER_MTOK).normalize()  # 10 normalizes to 1E+1: quantize gives it back
    return per_mtok.quantize(_ONE) if per_mtok == per_mtok.to_integral_value() else per_mtok

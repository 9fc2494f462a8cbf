"""What each deployment costs: its own YAML price, else its provider's, else genai-prices'; looked up once.

Every configured deployment is looked up when the book is built, at start-up, so no request waits on genai-prices;
a direct route (``anthropic/claude-x``, in no group) is looked up on first use and kept, in tables bounded because
callers choose those names. A deployment without a price costs 0, is named once in the log and counted
(``on_unpriced``, on each answer priced).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from llm_gateway.pricing import Price, ReservePrice
from llm_gateway.pricing_catalogue import Catalogue
from llm_gateway.settings import Deployment, GatewayConfig, ProviderConfig

log = logging.getLogger(__name__)

# Direct routes kept (prices and reservations), and unpriced deployments named, at most: callers choose those names.
DIRECT_ROUTES_KEPT = 1024

# (provider, model) of an answer that had no price: the lead's hook for llm_gateway_unpriced_requests_total.
UnpricedHook = Callable[[str, str], None]

K = TypeVar("K")
V = TypeVar("V")


class PriceBook:
    """``price(provider, model)`` at settlement and ``reserve_price(group, chain)`` at admission, from tables."""

    def __init__(
        self,
        providers: Mapping[str, ProviderConfig],
        groups: Mapping[str, Sequence[Deployment]],
        *,
        catalogue: Catalogue | None = None,
        on_unpriced: UnpricedHook | None = None,
    ) -> None:
        """Look up every deployment of ``groups`` whose provider is in ``providers`` (the others never answer)."""
        self._providers = dict(providers)
        self._catalogue = catalogue if catalogue is not None else Catalogue()
        self._vendors = {name: self._catalogue.vendor(name, cfg.base_url, cfg.type) for name, cfg in providers.items()}
        self.on_unpriced = on_unpriced
        self.unpriced: set[str] = set()  # "provider/model" of the deployments named in the log as unpriced
        self._naming_stopped = False
        self._direct: dict[tuple[str, str], Price | None] = {}
        self._reserves: dict[str, ReservePrice | None] = {}
        self._reserves_kept = len(groups) + DIRECT_ROUTES_KEPT
        self._configured = self._build([d for chain in groups.values() for d in chain if d.provider in providers])

    @classmethod
    def from_config(cls, config: GatewayConfig, *, on_unpriced: UnpricedHook | None = None) -> PriceBook:
        """The book for the providers that can answer (those with a key) and the configured model groups."""
        usable = {name: provider for name, provider in config.providers.items() if provider.usable}
        return cls(usable, config.models, on_unpriced=on_unpriced)

    def price(self, provider: str, model: str) -> Price | None:
        """The price of an answer from ``provider``'s ``model``; None (it costs 0) when there is none, which
        ``on_unpriced`` counts on every call."""
        key = (provider, model)
        if key in self._configured:
            price = self._configured[key]
        elif (price := self._direct_price(key)) is None:
            self._name_unpriced(provider, model)
        if price is None and self.on_unpriced is not None:
            self.on_unpriced(provider, model)
        return price

    def reserve_price(self, group: str, chain: Sequence[Deployment]) -> ReservePrice | None:
        """Nano-dollars per token that admission reserves for ``group``: its chain's dearest priced deployment
        (None: none is priced). Kept per group on first use: a group's chain does not change while running."""
        if group in self._reserves:
            return self._reserves[group]
        prices = [price.reserve() for d in chain if (price := self._stored(d.provider, d.model)) is not None]
        reserve = ReservePrice.most_expensive(prices)
        _keep(self._reserves, group, reserve, self._reserves_kept)
        return reserve

    def _build(self, deployments: list[Deployment]) -> dict[tuple[str, str], Price | None]:
        # YAML prices first: a provider/model listed in another group without one costs the same there.
        table: dict[tuple[str, str], Price | None] = {
            (d.provider, d.model): d.price.to_price() for d in deployments if d.price is not None
        }
        for d in deployments:
            key = (d.provider, d.model)
            if key not in table:
                table[key] = price = self._look_up(d.provider, d.model)
                if price is None:
                    self._name_unpriced(d.provider, d.model)
        return table

    def _look_up(self, provider: str, model: str) -> Price | None:
        """The provider's YAML price, else genai-prices' for its vendor; a deployment's own price is in the table."""
        config = self._providers.get(provider)
        if config is not None and config.price is not None:
            return config.price.to_price()
        vendor = self._vendors.get(provider)
        return self._catalogue.price(vendor, model) if vendor is not None else None

    def _stored(self, provider: str, model: str) -> Price | None:
        key = (provider, model)
        return self._configured[key] if key in self._configured else self._direct_price(key)

    def _direct_price(self, key: tuple[str, str]) -> Price | None:
        if key in self._direct:
            return self._direct[key]
        price = self._look_up(*key) if key[0] in self._providers else None
        _keep(self._direct, key, price, DIRECT_ROUTES_KEPT)
        return price

    def _name_unpriced(self, provider: str, model: str) -> None:
        name = f"{provider}/{model}"
        if name in self.unpriced or self._naming_stopped:
            return
        if len(self.unpriced) >= DIRECT_ROUTES_KEPT:
            self._naming_stopped = True
            log.warning("pricing: %d unpriced deployments named; any more cost 0 unnamed", DIRECT_ROUTES_KEPT)
            return
        self.unpriced.add(name)
        vendor = self._vendors.get(provider)
        why = f"genai-prices has no token price for it at {vendor!r}" if vendor else "its provider is no known vendor"
        log.warning("pricing: %s has no price (%s): it costs 0; give it a price: in the YAML", name, why)


def _keep(table: dict[K, V], key: K, value: V, limit: int) -> None:
    """Remember ``value``, forgetting the oldest entry past ``limit`` (a bound, not a cache policy)."""
    if len(table) >= limit:
        del table[next(iter(table))]
    table[key] = value

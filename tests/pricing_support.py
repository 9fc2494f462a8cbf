"""What answers cost by genai-prices' own arithmetic, to check the gateway's charges and reports against a
computation that is not the gateway's."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import genai_prices

from llm_gateway.pricing import MICRO, format_usd
from llm_gateway.schemas.core import Usage


def genai_cost(usage: Usage, model: str, **where: str) -> Decimal:
    """What genai-prices itself says ``usage`` costs, to the micro-dollar."""
    calc = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.prompt_tokens,
            cache_read_tokens=usage.cached_tokens,
            output_tokens=usage.completion_tokens,
        ),
        model,
        **where,  # type: ignore[call-overload]
    )
    total: Decimal = calc.total_price
    return total.quantize(MICRO, rounding=ROUND_HALF_EVEN)


def spend_usd(model: str, *usages: tuple[int, int], provider: str = "openai") -> str:
    """A report's ``spend_usd`` for answers of ``model`` with these (prompt, completion) usages: each answer priced
    on its own and rounded to the micro-dollar, as the ledger keeps it, then summed."""
    total = sum(
        (genai_cost(Usage(prompt, completion), model, provider_id=provider) for prompt, completion in usages),
        Decimal(0),
    )
    return format_usd(total)

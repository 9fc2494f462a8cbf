"""US dollar amounts in the admin and usage JSON: read exactly, answered as strings with six decimals.

A budget may be sent as a JSON string (``"12.50"``) or number (``12.5``); the admin routes parse numbers
as decimals from their text (``api/exact_json.py``), never through a float. Answers are strings
(``"12.500000"``): exact, and read alike by every JSON parser, which a float would not be.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, PlainSerializer, WithJsonSchema

from llm_gateway.pricing import format_usd
from llm_gateway.settings import MAX_BUDGET_USD

# A monthly budget in US dollars: 0 (nothing may be spent) up to MAX_BUDGET_USD, to the micro-dollar.
# ``abs`` turns the decimal ``-0`` into ``0``.
UsdBudget = Annotated[
    Decimal,
    Field(ge=0, le=MAX_BUDGET_USD, decimal_places=6),
    AfterValidator(abs),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": int(MAX_BUDGET_USD)},
                {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,6})?$"},
            ],
            "description": f"US dollars, a string or a number: at most six decimals, 0 to {MAX_BUDGET_USD}",
            "examples": ["25.00"],
        },
        mode="validation",
    ),
]
# An amount in an answer: six decimals, as a string.
Usd = Annotated[Decimal, PlainSerializer(format_usd, return_type=str, when_used="json")]

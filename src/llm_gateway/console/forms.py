"""What an operator typed into a console form: read from the urlencoded body, checked, turned into values.

An empty field means "not set" (no limit of its own, the default, no team); anything else must parse, or the
form comes back with the error next to it. The models in ``auth/admin.py`` then check values as the admin
API does, so the console accepts exactly what ``/admin`` accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol
from urllib.parse import parse_qsl

from pydantic import ValidationError

MAX_FIELDS = 64


class FormError(ValueError):
    """One or more fields that cannot be used; ``messages`` are shown above the form."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def parse_body(body: bytes) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` -> fields (the last value of a repeated name wins)."""
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise FormError(["The form could not be read."]) from None


class Form:
    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)

    def text(self, name: str) -> str | None:
        value = self.fields.get(name, "").strip()
        return value or None

    def integer(self, name: str, label: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not value.isascii() or not value.isdigit():
            raise FormError([f"{label}: a whole number, or empty."])
        return int(value)

    def names(self, name: str) -> list[str] | None:
        """A comma-separated list (models a key may use); empty: None (all)."""
        value = self.text(name)
        return [item.strip() for item in value.split(",") if item.strip()] if value else None

    def moment(self, name: str, label: str) -> datetime | None:
        """``<input type="datetime-local">`` read as UTC."""
        value = self.text(name)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise FormError([f"{label}: a date and time such as 2027-01-31T12:00."]) from None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# The labels of the limits that keys, users and teams all have, as the forms call them.
LIMIT_LABELS = {
    "monthly_token_budget": "Monthly token budget",
    "monthly_budget_usd": "Monthly budget in US dollars",
    "rate_limit_per_minute": "Requests per minute",
}


def field_text(value: int | Decimal | str | None) -> str:
    """A stored value as a form field shows it: empty for None, dollars without trailing zeros past the cents."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        whole, _, fraction = f"{value.normalize():f}".partition(".")
        return f"{whole}.{fraction.ljust(2, '0')}"
    return str(value)


class HasLimits(Protocol):
    monthly_token_budget: int | None
    monthly_budget_usd: Decimal | None
    rate_limit_per_minute: int | None


def limit_values(holder: HasLimits | None) -> dict[str, str]:
    """The three limit fields of a key's, a user's or a team's form as their stored values fill it (empty: none)."""
    return {
        "monthly_token_budget": field_text(holder.monthly_token_budget if holder else None),
        "monthly_budget_usd": field_text(holder.monthly_budget_usd if holder else None),
        "rpm": field_text(holder.rate_limit_per_minute if holder else None),
    }


def limit_fields(form: Form) -> dict[str, int | str | None]:
    """The three limits of a key, a user or a team; an empty field is None (no limit of its own, or the default)."""
    return {
        "monthly_token_budget": form.integer("monthly_token_budget", LIMIT_LABELS["monthly_token_budget"]),
        "monthly_budget_usd": form.text("monthly_budget_usd"),
        "rate_limit_per_minute": form.integer("rpm", LIMIT_LABELS["rate_limit_per_minute"]),
    }


def messages(error: ValidationError, labels: Mapping[str, str]) -> list[str]:
    """Pydantic's errors with each field called by its label on the form."""
    found = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        found.append(f"{labels.get(field, field)}: {message}")
    return found

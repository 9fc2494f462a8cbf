"""Which limits a caller gets: the key's own, else the user's, else the configured default; and the user's team.

One place for the rule, so an API key, a JWT and the CLI's reports resolve a user the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from llm_gateway.auth.identity import Identity, IdentityKind
from llm_gateway.settings import Settings
from llm_gateway.store.tables import ApiKey, Team, User


@dataclass(frozen=True, slots=True)
class Defaults:
    """The configured limits that apply when neither the key nor the user overrides them."""

    rate_limit_per_minute: int
    monthly_token_budget: int
    monthly_budget_usd: Decimal | None = None  # None: no US dollar budget

    @classmethod
    def of(cls, settings: Settings) -> Defaults:
        """A signed-in caller's defaults (anonymous callers have their own, and no US dollar budget)."""
        return cls(
            settings.rate_limit_per_minute, settings.default_monthly_token_budget, settings.default_monthly_budget_usd
        )


def first_set(*values: int | None) -> int:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value set")


def user_identity(
    user_id: str, user: User | None, team: Team | None, defaults: Defaults, kind: IdentityKind
) -> Identity:
    """A user's limits (their overrides over the defaults) and their team's, when they belong to one."""
    return Identity(
        user_id=user_id,
        kind=kind,
        rate_limit_per_minute=first_set(user.rate_limit_per_minute if user else None, defaults.rate_limit_per_minute),
        monthly_token_budget=first_set(user.monthly_token_budget if user else None, defaults.monthly_token_budget),
        monthly_budget_usd=(
            user.monthly_budget_usd if user and user.monthly_budget_usd is not None else defaults.monthly_budget_usd
        ),
        team_id=team.id if team else None,
        team_token_budget=team.monthly_token_budget if team else None,
        team_budget_usd=team.monthly_budget_usd if team else None,
        team_rate_limit_per_minute=team.rate_limit_per_minute if team else None,
    )


def key_identity(key: ApiKey, user: User | None, team: Team | None, defaults: Defaults) -> Identity:
    """The user's identity, with the key's own rate limit winning and the key's budgets as caps inside the user's."""
    identity = user_identity(key.user_id, user, team, defaults, "api_key")
    return replace(
        identity,
        rate_limit_per_minute=first_set(key.rate_limit_per_minute, identity.rate_limit_per_minute),
        key_id=key.id,
        key_token_budget=key.monthly_token_budget,
        key_budget_usd=key.monthly_budget_usd,
        allowed_models=frozenset(key.models) if key.models is not None else None,
    )

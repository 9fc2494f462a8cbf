"""The caller, as every later step of the pipeline sees it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

IdentityKind = Literal["api_key", "jwt", "anonymous"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A resolved caller. Anonymous callers get ``user_id`` ``anon:<client ip>``.

    ``monthly_token_budget`` is the user's budget; ``key_token_budget`` caps one key inside it.
    ``allowed_models`` is None when the credential may use every model. The US-dollar budgets stand beside
    the token budgets, per user, key and team (None: no such budget); a user in a team (``team_id``) also
    draws on the team's token budget and request rate when the team sets them. A request is admitted only
    when every budget that applies has room (``limits/``).
    """

    user_id: str
    kind: IdentityKind
    rate_limit_per_minute: int
    monthly_token_budget: int
    key_id: str | None = None
    key_token_budget: int | None = None
    allowed_models: frozenset[str] | None = None
    monthly_budget_usd: Decimal | None = None  # the user's (or DEFAULT_MONTHLY_BUDGET_USD)
    key_budget_usd: Decimal | None = None  # the key's own
    team_id: str | None = None
    team_token_budget: int | None = None
    team_budget_usd: Decimal | None = None
    team_rate_limit_per_minute: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models

    @property
    def rate_key(self) -> str:
        """Requests per minute are counted per credential: per key when there is one, else per user."""
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user_id}"

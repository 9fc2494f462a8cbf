"""The caller, as every later step of the pipeline sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IdentityKind = Literal["api_key", "jwt", "anonymous"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A resolved caller. Anonymous callers get ``user_id`` ``anon:<client ip>``.

    ``monthly_token_budget`` is the user's budget; ``key_token_budget`` caps one key inside it.
    ``allowed_models`` is None when the credential may use every model.
    """

    user_id: str
    kind: IdentityKind
    rate_limit_per_minute: int
    monthly_token_budget: int
    key_id: str | None = None
    key_token_budget: int | None = None
    allowed_models: frozenset[str] | None = None

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models

    @property
    def rate_key(self) -> str:
        """Requests per minute are counted per credential: per key when there is one, else per user."""
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user_id}"

"""One ledger row as the pipeline writes it and the ledger inserts (the console's rollups read it through their own
protocol, ``rollups.UsageRow``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from llm_gateway.ids import new_id
from llm_gateway.pricing import ZERO
from llm_gateway.store.tables import utcnow


@dataclass(slots=True)
class UsageRow:
    request_id: str
    user_id: str
    month: str  # YYYY-MM the tokens were charged to (the admission's month)
    model_group: str
    key_id: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    status: int = 200
    latency_ms: int = 0
    created_at: datetime = field(default_factory=utcnow)
    endpoint: str = "chat"  # the inbound API: chat, messages, embeddings, responses
    cost_usd: Decimal = ZERO  # exact, to the micro-dollar (``pricing.Price.cost``)
    team_id: str | None = None  # the user's team at admission
    attempts: int = 1  # upstream attempts: more than 1 after a fallback, 0 for a cache hit
    id: str = field(default_factory=new_id)

    @property
    def charged_tokens(self) -> int:
        return 0 if self.cached else self.prompt_tokens + self.completion_tokens

    @property
    def charged_usd(self) -> Decimal:
        return ZERO if self.cached else self.cost_usd

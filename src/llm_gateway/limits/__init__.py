"""Per-identity requests per minute and monthly budgets in tokens and US dollars, admitted in one atomic step.

``MemoryLimits`` (one process) and ``RedisLimits`` (any number of processes) implement
``Admission``: ``admit()`` checks every rate (the credential's, the team's) and reserves against
every budget (user, key, team; tokens and US dollars), ``settle()`` charges what was used and what
it cost and frees the rest, ``release()`` frees everything. ``rate.py`` says why the window is a
sliding window counter; ``budget.py`` holds the reservation rule, ``rule.py`` the decision.
"""

from llm_gateway.limits.base import (
    Admission,
    BudgetExceeded,
    LedgerTotals,
    LimitState,
    RequestRateExceeded,
    Ticket,
    TokenBudgetExceeded,
    UsdBudgetExceeded,
    format_duration,
    no_ledger,
)
from llm_gateway.limits.budget import Balance, ScopeKind
from llm_gateway.limits.memory import MemoryLimits
from llm_gateway.limits.redis import RedisLimits

__all__ = [
    "Admission",
    "Balance",
    "BudgetExceeded",
    "LedgerTotals",
    "LimitState",
    "MemoryLimits",
    "RedisLimits",
    "RequestRateExceeded",
    "ScopeKind",
    "Ticket",
    "TokenBudgetExceeded",
    "UsdBudgetExceeded",
    "format_duration",
    "no_ledger",
]

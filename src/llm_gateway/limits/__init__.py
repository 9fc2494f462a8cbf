"""Per-identity requests per minute and monthly token budgets, admitted in one atomic step.

``MemoryLimits`` (one process) and ``RedisLimits`` (any number of processes) implement
``Admission``: ``admit()`` checks the rate and reserves tokens, ``settle()`` charges what was
used and frees the rest, ``release()`` frees everything. ``rate.py`` says why the window is a
sliding window counter; ``budget.py`` holds the reservation rule.
"""

from llm_gateway.limits.base import (
    Admission,
    LedgerUsage,
    LimitState,
    RequestRateExceeded,
    Ticket,
    TokenBudgetExceeded,
    format_duration,
    no_ledger,
)
from llm_gateway.limits.budget import Balance
from llm_gateway.limits.memory import MemoryLimits
from llm_gateway.limits.redis import RedisLimits

__all__ = [
    "Admission",
    "Balance",
    "LedgerUsage",
    "LimitState",
    "MemoryLimits",
    "RedisLimits",
    "RequestRateExceeded",
    "Ticket",
    "TokenBudgetExceeded",
    "format_duration",
    "no_ledger",
]

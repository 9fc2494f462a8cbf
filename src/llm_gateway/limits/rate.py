"""Requests per minute: the sliding window counter, as pure integer arithmetic.

Why this algorithm. A fixed window lets a caller send twice its limit across a window
boundary (N at 0:59, N at 1:00). A sliding window *log* is exact but stores one entry per
request per identity (a sorted set in Redis: memory and work grow with the limit). The
sliding window *counter* keeps two integers per identity -- this minute's count and the
previous minute's -- and estimates the last 60 seconds as::

    estimate = previous * (window - elapsed) / window + current

i.e. it assumes the previous minute's requests were spread evenly. That bounds bursts at
the boundary (an identity never gets 2N in any 60 s span) for O(1) memory and one INCR, and
it is the same arithmetic in Redis (``lua/admit.lua``) and in process (``memory.py``).

Everything here is integer milliseconds (``admits`` multiplies instead of dividing), so the
Lua script and Python agree to the request. A limit of 0 admits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class WindowCounts:
    """An identity's counters at one instant: ``current``/``previous`` window counts, ms into the current window."""

    current: int
    previous: int
    elapsed_ms: int
    window_ms: int

    @property
    def weighted_previous(self) -> int:
        """``previous * (window - elapsed)``: the previous window's share, scaled by ``window_ms``."""
        return self.previous * (self.window_ms - self.elapsed_ms)


def position(now_ms: int, window_ms: int) -> tuple[int, int]:
    """(window index, ms elapsed in that window) of an instant; windows are aligned to the epoch."""
    return divmod(now_ms, window_ms)


def admits(limit: int, counts: WindowCounts) -> bool:
    """Whether one more request keeps the sliding estimate within ``limit``."""
    return counts.weighted_previous + (counts.current + 1) * counts.window_ms <= limit * counts.window_ms


def remaining(limit: int, counts: WindowCounts) -> int:
    """Requests that could still be admitted now (the ``x-ratelimit-remaining-requests`` value)."""
    scaled = limit * counts.window_ms - counts.weighted_previous - counts.current * counts.window_ms
    return max(0, scaled // counts.window_ms)


def retry_after_ms(limit: int, counts: WindowCounts) -> int:
    """Milliseconds until ``admits`` turns true if nothing else arrives (the ``Retry-After`` of a refusal)."""
    window, elapsed = counts.window_ms, counts.elapsed_ms
    if limit <= 0:
        return window
    if admits(limit, counts):
        return 0
    if counts.current + 1 <= limit:
        # Still this window: wait until the previous window's share has decayed enough.
        # previous * (window - t) <= (limit - current - 1) * window  <=>  t >= window - free*window/previous
        free = (limit - counts.current - 1) * window
        needed = window - free // counts.previous
        return max(1, needed - elapsed)
    # Not before the next window, where this window's count becomes the decaying "previous".
    needed_next = window - ((limit - 1) * window) // counts.current
    return (window - elapsed) + max(0, needed_next)


def reset_ms(counts: WindowCounts) -> int:
    """Milliseconds until the estimate is back to zero: the limit is whole again (``x-ratelimit-reset-requests``)."""
    if counts.current:
        return 2 * counts.window_ms - counts.elapsed_ms
    if counts.previous:
        return counts.window_ms - counts.elapsed_ms
    return 0

"""The sliding window counter's arithmetic: admission, remaining, and Retry-After that is exact to the ms."""

from __future__ import annotations

import itertools

import pytest

from llm_gateway.limits import rate
from llm_gateway.limits.rate import WindowCounts

W = 60_000


def counts(current: int, previous: int, elapsed_ms: int, window_ms: int = W) -> WindowCounts:
    return WindowCounts(current, previous, elapsed_ms, window_ms)


def test_position_is_epoch_aligned() -> None:
    assert rate.position(0, W) == (0, 0)
    assert rate.position(W * 5 + 1234, W) == (5, 1234)


def test_empty_window_admits_up_to_the_limit() -> None:
    assert rate.admits(3, counts(2, 0, 0))
    assert not rate.admits(3, counts(3, 0, 0))
    assert rate.remaining(3, counts(0, 0, 0)) == 3
    assert rate.remaining(3, counts(3, 0, 0)) == 0


def test_previous_window_decays_linearly() -> None:
    # 10 requests last minute; 30 s into this one they weigh 5.
    assert rate.remaining(10, counts(0, 10, 30_000)) == 5
    assert rate.admits(10, counts(4, 10, 30_000))
    assert not rate.admits(10, counts(5, 10, 30_000))
    # A boundary burst is not doubled: 10 at the end of one minute leave nothing at the start of the next.
    assert not rate.admits(10, counts(0, 10, 0))


def test_zero_limit_admits_nothing() -> None:
    assert not rate.admits(0, counts(0, 0, 0))
    assert rate.retry_after_ms(0, counts(0, 0, 0)) == W


@pytest.mark.parametrize("limit", [1, 2, 5, 7])
def test_retry_after_is_exactly_when_admission_reopens(limit: int) -> None:
    """Exhaustive over small counts: at +retry the request is admitted, at +retry-1 it is not."""
    window = 1_000  # a small window keeps the exhaustive walk fast; the arithmetic is scale-free
    for current, previous, elapsed in itertools.product(range(limit + 3), range(limit + 3), range(0, window, 37)):
        state = counts(current, previous, elapsed, window)
        if rate.admits(limit, state):
            assert rate.retry_after_ms(limit, state) == 0
            continue
        wait = rate.retry_after_ms(limit, state)
        assert wait >= 1
        assert _admits_after(limit, state, wait), (current, previous, elapsed, wait)
        assert not _admits_after(limit, state, wait - 1), (current, previous, elapsed, wait)


def _admits_after(limit: int, state: WindowCounts, wait: int) -> bool:
    """Whether a request ``wait`` ms later is admitted, nothing else having arrived."""
    at = state.elapsed_ms + wait
    window = state.window_ms
    if at < window:
        return rate.admits(limit, counts(state.current, state.previous, at, window))
    if at < 2 * window:
        return rate.admits(limit, counts(0, state.current, at - window, window))
    return rate.admits(limit, counts(0, 0, at - 2 * window, window))


def test_reset_is_when_the_estimate_reaches_zero() -> None:
    assert rate.reset_ms(counts(0, 0, 10_000)) == 0
    assert rate.reset_ms(counts(0, 4, 10_000)) == 50_000
    assert rate.reset_ms(counts(1, 4, 10_000)) == 110_000

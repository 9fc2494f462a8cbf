"""Anthropic's cursor pagination of ``GET /v1/models``: walking the pages either way yields every model once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llm_gateway.api.models import anthropic_page
from llm_gateway.schemas.openai import Model

NAMES = st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=12)
LIMITS = st.integers(min_value=1, max_value=5)


def models(names: list[str]) -> list[Model]:
    return [Model(id=name, created=0, owned_by="llm-gateway") for name in names]


@given(NAMES, LIMITS)
def test_paging_forward_from_the_start_yields_every_model_in_order(names: list[str], limit: int) -> None:
    seen: list[str] = []
    after: str | None = None
    while True:
        page, has_more = anthropic_page(models(names), limit=limit, after_id=after)
        assert len(page) <= limit
        seen += [model.id for model in page]
        if not has_more:
            break
        assert len(page) == limit
        after = page[-1].id
    assert seen == sorted(names)


@given(NAMES, LIMITS, st.text(min_size=1, max_size=8))
def test_paging_backward_from_a_cursor_yields_every_model_before_it(names: list[str], limit: int, cursor: str) -> None:
    pages: list[list[str]] = []
    before = cursor
    while True:
        page, has_more = anthropic_page(models(names), limit=limit, before_id=before)
        pages.append([model.id for model in page])
        if not has_more:
            break
        before = page[0].id
    # Each page lies just before the previous one, in ascending order within itself (as the SDK expects).
    assert [name for found in reversed(pages) for name in found] == sorted(n for n in names if n < cursor)

"""``x-gateway-dropped-params`` lists the caller's own field names: whatever they are, the answer must still go out
(a header value that is not Latin-1, or holds CR/LF, would fail the response or split it) and stay bounded."""

from __future__ import annotations

from llm_gateway.pipeline.call import MAX_DROPPED_NAMES, dropped_params_header


def test_plain_names_are_listed_as_they_are() -> None:
    assert dropped_params_header(("reasoning", "text.verbosity", "tools[0].strict")) == (
        "reasoning,text.verbosity,tools[0].strict"
    )


def test_names_that_could_break_a_header_are_percent_encoded() -> None:
    value = dropped_params_header(("ünknown", "a\r\nset-cookie: x", "b,c"))
    assert value == "%C3%BCnknown,a%0D%0Aset-cookie%3A%20x,b%2Cc"
    value.encode("ascii")  # always sendable


def test_the_list_is_bounded_and_says_how_many_more() -> None:
    names = tuple(f"field{i}" for i in range(MAX_DROPPED_NAMES + 5))
    listed = dropped_params_header(names).split(",")
    assert len(listed) == MAX_DROPPED_NAMES + 1 and listed[-1] == "+5 more"

"""The Anthropic Messages and the Responses routes beside chat (issue 20), at 64 connections, cache off.

Why a section of its own: ``POST /v1/messages`` and ``POST /v1/responses`` reach the same chat upstream
as ``/v1/chat/completions`` but pay a translation each way (the bench's ``openai`` provider is set to
``responses: translated``: the fake upstream speaks only chat). So each is run against the same direct
call (the chat POST straight to the fast upstream, what the translated request becomes), with chat run
again in the same breath: what each surface costs over chat is read within one section, not across the
run. The bodies carry the same conversation (system prompt, one user message, 64 tokens at most):
``post.lua messages`` / ``post.lua responses``. Anonymous callers, so no response is stored.
"""

from __future__ import annotations

from harness import Bench, Gateway
from loadgen import LoadResult
from report import Row, compare_row, pct

CONNECTIONS = 64
SURFACES = (
    ("chat", "/v1/chat/completions", ()),
    ("Anthropic Messages", "/v1/messages", ("messages",)),
    ("Responses", "/v1/responses", ("responses",)),
)


def run(bench: Bench, gateway: Gateway) -> list[Row]:
    assert bench.upstreams is not None
    for _, path, args in SURFACES[1:]:  # first requests of a surface pay one-off costs (imports, schemas)
        bench.wrk(gateway.port, CONNECTIONS, "bench", *args, seconds=bench.durations.warmup_s, path=path)
    direct = bench.wrk(bench.upstreams.fast, CONNECTIONS, "bench")
    runs: list[tuple[str, str, LoadResult]] = []
    for name, path, args in SURFACES:
        runs.append((name, path, bench.wrk(gateway.port, CONNECTIONS, "bench", *args, watch=gateway.pid, path=path)))
    chat = runs[0][2]
    rows = []
    for name, path, through in runs:
        translated = "" if name == "chat" else ", translated to chat"
        vs_chat = through.rps / chat.rps if chat.rps else None
        cpu_chat, cpu = chat.cpu_us_per_request or 0.0, through.cpu_us_per_request or 0.0
        note = (
            f"{path}{translated}; vs chat in this section: {pct(vs_chat)} of its req/s, "
            f"{cpu - cpu_chat:+,.0f} us of CPU per request"
            if name != "chat"
            else f"{path}, run again beside the translated routes (the saturation row is the same request)"
        )
        rows.append(
            compare_row(
                f"route {name}, {CONNECTIONS} conn",
                direct,
                through,
                note=note,
                extra={"path": path, "vs_chat": vs_chat},
            )
        )
    return rows

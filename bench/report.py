"""The one table the benchmark prints, and the JSON it writes beside it.

Why one row per scenario with direct and gateway side by side: every claim about the
gateway's speed is relative to calling the fake upstream directly in the same run, on the
same noisy machine, so the two are never read apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen import LoadResult

NOISE_SHARE = 0.05  # other processes' share of the gateway's core above which a row is flagged
COLUMNS = (
    "scenario",
    "direct req/s",
    "gateway req/s",
    "gw/direct",
    "direct p50 / p99 ms",
    "gateway p50 / p99 ms",
    "added p50 / p99 ms",
    "errors d / gw",
    "gw CPU us/req",
    "target",
    "met",
)


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    size = abs(value)
    if size < 10:
        return f"{value:.3f}"
    if size < 100:
        return f"{value:.2f}"
    return f"{value:,.1f}"


def signed_ms(value: float) -> str:
    return ("+" if value >= 0 else "") + ms(value)


def rps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


@dataclass
class Row:
    """One line of the table: display cells, the raw figures for JSON, and an optional footnote."""

    scenario: str
    cells: dict[str, str]
    data: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    met: bool | None = None
    note: str = ""

    def line(self) -> list[str]:
        values = {"scenario": self.scenario, "target": self.target or "-", "met": verdict(self.met), **self.cells}
        return [values.get(column, "-") for column in COLUMNS]


def compare_row(
    scenario: str,
    direct: LoadResult,
    gateway: LoadResult,
    *,
    target: str = "",
    met: bool | None = None,
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> Row:
    """A wrk run direct and through the gateway: throughput, its ratio, percentiles, added latency."""
    ratio = gateway.rps / direct.rps if direct.rps else None
    if gateway.foreign_cpu is not None and gateway.foreign_cpu >= NOISE_SHARE:
        noise = f"NOISY: other processes took {gateway.foreign_cpu * 100:.0f} % of the gateway's core during its run"
        note = f"{noise}; {note}" if note else noise
    added_p50 = gateway.p50_ms - direct.p50_ms
    added_p99 = gateway.p99_ms - direct.p99_ms
    cells = {
        "direct req/s": rps(direct.rps),
        "gateway req/s": rps(gateway.rps),
        "gw/direct": pct(ratio),
        "direct p50 / p99 ms": f"{ms(direct.p50_ms)} / {ms(direct.p99_ms)}",
        "gateway p50 / p99 ms": f"{ms(gateway.p50_ms)} / {ms(gateway.p99_ms)}",
        "added p50 / p99 ms": f"{signed_ms(added_p50)} / {signed_ms(added_p99)}",
        "errors d / gw": f"{direct.errors} / {gateway.errors}",
        "gw CPU us/req": "-" if gateway.cpu_us_per_request is None else f"{gateway.cpu_us_per_request:,.0f}",
    }
    data = {
        "direct": direct.as_dict(),
        "gateway": gateway.as_dict(),
        "ratio": ratio,
        "added_p50_ms": round(added_p50, 3),
        "added_p99_ms": round(added_p99, 3),
        **(extra or {}),
    }
    return Row(scenario, cells, data, target, met, note)


def info_row(
    scenario: str, value: str, *, target: str = "", met: bool | None = None, note: str = "", **data: Any
) -> Row:
    """A measurement of the gateway alone (start-up, memory): its value sits in the gateway column."""
    return Row(scenario, {"gateway p50 / p99 ms": value}, dict(data), target, met, note)


def skipped_row(scenario: str, why: str) -> Row:
    return Row(scenario, {"gateway p50 / p99 ms": "skipped"}, {"skipped": why}, note=f"skipped: {why}")


def render(rows: list[Row], header_lines: list[str]) -> str:
    """A plain-text table (GitHub-flavoured Markdown, so it pastes into notes), footnotes under it."""
    lines = [*header_lines, ""] if header_lines else []
    table = [list(COLUMNS), *(row.line() for row in rows)]
    notes: list[str] = []
    for row, line in zip(rows, table[1:], strict=True):
        if row.note:
            notes.append(row.note)
            line[0] = f"{line[0]} [{len(notes)}]"
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]

    def fmt(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    lines.append(fmt(table[0]))
    lines.append("|" + "|".join(("-" * (w + 1) + (":" if i else "-")) for i, w in enumerate(widths)) + "|")
    lines.extend(fmt(line) for line in table[1:])
    if notes:
        lines.append("")
        lines.extend(f"[{i}] {note}" for i, note in enumerate(notes, start=1))
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "rows": [
            {"scenario": r.scenario, "target": r.target, "met": r.met, "note": r.note, **r.data, "cells": r.cells}
            for r in rows
        ],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")

"""Human tables, JSON and CSV on stdout; notes for humans on stderr."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import click

from ari_app.domain.values import format_duration


def cell(value: Any) -> str:
    """How one value reads in a table: `-` for nothing, local time for instants."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def seconds(value: int | float | None) -> str:
    """A duration for humans: 95 -> `1m35s`."""
    return "-" if value is None else format_duration(round(value))


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns aligned to their widest cell; numbers right-aligned."""
    raw = [list(r) for r in rows]
    texts = [[cell(v) for v in r] for r in raw]
    widths = [len(h) for h in headers]
    for r in texts:
        widths = [max(w, len(t)) for w, t in zip(widths, r, strict=True)]
    right = [
        bool(raw) and all(_numeric(r[i]) or r[i] is None for r in raw) for i in range(len(headers))
    ]
    lines = []
    for r in [list(headers), *texts]:
        parts = [
            t.rjust(w) if align else t.ljust(w)
            for t, w, align in zip(r, widths, right, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    """A table on stdout, or `empty` on stderr when there are no rows (stdout stays clean)."""
    if not rows:
        note(empty)
        return
    click.echo(table(headers, rows))


def echo_fields(fields: Iterable[tuple[str, Any]]) -> None:
    """`key: value` lines with the values aligned (for `show`)."""
    items = list(fields)
    width = max((len(k) for k, _ in items), default=0) + 1
    for key, value in items:
        click.echo(f"{key + ':':<{width}} {cell(value)}")


def _default(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(data: Any, *, compact: bool = False) -> str:
    if compact:
        return json.dumps(data, ensure_ascii=False, default=_default, separators=(",", ":"))
    return json.dumps(data, ensure_ascii=False, default=_default, indent=2)


def echo_json(data: Any) -> None:
    click.echo(to_json(data))


def echo_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    click.echo(out.getvalue(), nl=False)


def note(text: str) -> None:
    """A message for the human at the terminal (stderr), never mixed into data."""
    click.echo(text, err=True)


def done(text: str) -> None:
    """Confirmation of a change: stdout, one line."""
    click.echo(text)

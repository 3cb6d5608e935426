"""How client commands print: a Rich table for people, JSON with --raw for scripts.

Nothing is ever cut: an id shown is an id that works when pasted. A table that fits the terminal
(or 80 columns when the output is not a terminal) at its natural width is printed as a table;
one that does not is printed as records, one ``column  value`` line per field and a blank line
between items (as ``psql``'s expanded mode does), so no cell is folded or shortened.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(soft_wrap=True, highlight=False)

_UNLIMITED = 1_000_000


def show(
    rows: Sequence[dict[str, Any]] | dict[str, Any], columns: Sequence[str], raw: bool
) -> None:
    if raw:
        print(json.dumps(rows, indent=2, default=str))
        return
    items = [rows] if isinstance(rows, dict) else list(rows)
    if not items:
        out.print("(none)")
        return
    cells = [[_cell(item.get(c)) for c in columns] for item in items]
    table = Table(*columns, show_lines=False, header_style="bold")
    for column in table.columns:
        column.no_wrap = True
        column.overflow = "ignore"
    for row in cells:
        table.add_row(*(escape(v) for v in row))
    natural = out.measure(table, options=out.options.update_width(_UNLIMITED)).maximum
    if natural <= out.width:
        out.print(table)
        return
    _records(columns, cells)


def _records(columns: Sequence[str], cells: list[list[str]]) -> None:
    """One ``column  value`` line per field; long values run on (the terminal wraps them)."""
    width = max(len(c) for c in columns)
    for i, row in enumerate(cells):
        if i:
            print()
        for column, value in zip(columns, row, strict=True):
            print(f"{column:<{width}}  {value}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)

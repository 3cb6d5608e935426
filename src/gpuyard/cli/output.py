"""How client commands print: a Rich table for people, JSON with --raw for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)


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
    table = Table(*columns, show_lines=False, header_style="bold")
    for item in items:
        table.add_row(*(_cell(item.get(c)) for c in columns))
    out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)

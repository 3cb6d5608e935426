"""Inclusive number ranges written ``START-END`` (port ranges, uid ranges)."""

from __future__ import annotations


def parse_bounds(text: str, *, what: str, example: str) -> tuple[int, int]:
    """``"40000-40999"`` -> ``(40000, 40999)``; a single number is a range of one.

    ``what`` names the range in the error (``"port range"``), ``example`` shows a good one.
    """
    lo, sep, hi = text.strip().partition("-")
    try:
        start = int(lo)
        end = int(hi) if sep else start
    except ValueError:
        raise ValueError(f"bad {what} {text!r}: expected START-END, e.g. {example}") from None
    return start, end

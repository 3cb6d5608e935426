"""How a row is named in a request: by its opaque id (``vm_…``) or, in the Vast dialect, by its
integer number. One rule for every resource that has both."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

from gpuyard.core.ids import is_id

_MAX_DIGITS = 18  # stays inside a signed 64-bit integer


def by_ref(model: Any, ref: str, prefix: str) -> ColumnElement[bool] | None:
    """The condition selecting ``ref`` in ``model``; None when ``ref`` can name no row."""
    if is_id(ref, prefix):
        condition: ColumnElement[bool] = model.id == ref
        return condition
    if ref.isascii() and ref.isdigit() and len(ref) <= _MAX_DIGITS:
        condition = model.pk == int(ref)
        return condition
    return None

"""Query parameters many routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from gpuyard.core.pagination import DEFAULT_LIMIT
from gpuyard.server.schemas.common import LIMIT_DESCRIPTION

Limit = Annotated[int, Query(ge=1, le=100, description=LIMIT_DESCRIPTION)]
Cursor = Annotated[
    str | None, Query(max_length=512, description="next_cursor of the previous page")
]
DEFAULT = DEFAULT_LIMIT

"""Who may call the Vast dialect: the caller's API key, on its own org; reads need org:read and
writes org:write."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gpuyard.core.principal import Principal, Scope
from gpuyard.server.deps import Caller, require


def _reader(principal: Caller) -> Principal:
    require(principal, Scope.READ)
    return principal


def _writer(principal: Caller) -> Principal:
    require(principal, Scope.WRITE)
    return principal


Reader = Annotated[Principal, Depends(_reader)]
Writer = Annotated[Principal, Depends(_writer)]

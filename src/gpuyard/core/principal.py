"""Who is calling: an API key bound to one org, with scopes.

Scopes nest: ``operator`` may do everything; ``org:write`` may read and call inference;
``org:read`` may only read; ``inference`` may only call the inference API.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache


class Scope(StrEnum):
    OPERATOR = "operator"
    WRITE = "org:write"
    READ = "org:read"
    INFERENCE = "inference"


_IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.OPERATOR: frozenset(Scope),
    Scope.WRITE: frozenset({Scope.WRITE, Scope.READ, Scope.INFERENCE}),
    Scope.READ: frozenset({Scope.READ}),
    Scope.INFERENCE: frozenset({Scope.INFERENCE}),
}


@cache  # few sets of scopes exist, and every request asks
def granted(scopes: frozenset[Scope]) -> frozenset[Scope]:
    """Every scope that ``scopes`` implies."""
    out: set[Scope] = set()
    for scope in scopes:
        out |= _IMPLIES[scope]
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    org_id: str
    scopes: frozenset[Scope]
    secret_hash: str
    rpm_limit: int | None = None
    tpm_limit: int | None = None

    def allows(self, scope: Scope) -> bool:
        return scope in granted(self.scopes)

    @property
    def is_operator(self) -> bool:
        return Scope.OPERATOR in self.scopes

"""Exponential backoff with jitter for reaching the server again: 1 s, 2 s, 4 s … capped at 30 s.

Jitter only ever shortens a wait (by up to ``jitter`` of it), so the cap holds and a thousand agents
that lost the server at the same moment do not all come back in the same second.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        *,
        initial_s: float = 1.0,
        factor: float = 2.0,
        max_s: float = 30.0,
        jitter: float = 0.2,
        random_fn: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial_s <= max_s or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("need 0 < initial_s <= max_s, factor >= 1 and 0 <= jitter < 1")
        self.initial_s = initial_s
        self.factor = factor
        self.max_s = max_s
        self.jitter = jitter
        self._random = random_fn
        self.failures = 0

    def next_delay(self) -> float:
        """The wait after one more failure in a row."""
        base = min(self.max_s, self.initial_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        return base * (1.0 - self.jitter * self._random())

    def reset(self) -> None:
        self.failures = 0

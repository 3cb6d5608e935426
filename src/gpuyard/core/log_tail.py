"""A workload's output as the server keeps it: the last lines (``tail``) and where they end in
the whole output (``size``, in bytes, as the agent counted them; ``None`` where its runtime cannot
count, as with docker).

``read_tail`` answers a logs request: the last lines, or, for a client that follows the output,
what came after the byte offset it has already shown. What the server no longer keeps is
reported by ``start`` being past the offset asked for; a ``size`` below that offset means the
output started over (the workload was started again).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogSlice:
    text: str
    size: int | None
    """Where ``text`` ends in the whole output; None when not counted."""
    start: int | None
    """Where ``text`` begins in the whole output; None when not counted."""


def read_tail(tail: str, size: int | None, *, lines: int, after: int | None = None) -> LogSlice:
    """The last ``lines`` lines of ``tail``, or with ``after`` (and a counted ``size``) the
    output after byte ``after``: all of what is kept when ``after`` is older than that or the
    output started over since."""
    data = tail.encode()
    begins = None if size is None else max(0, size - len(data))
    if after is None or size is None:
        kept = tail.splitlines(keepends=True)[-lines:] if lines > 0 else []
        text = "".join(kept)
        return LogSlice(text, size, None if size is None else size - len(text.encode()))
    assert begins is not None
    if after > size or after < begins:  # started over, or partly no longer kept
        return LogSlice(tail, size, begins)
    return LogSlice(data[after - begins :].decode(errors="replace"), size, after)


def new_lines(shown: list[str], tail: list[str]) -> list[str]:
    """The lines of ``tail`` after what ``shown`` (the previous tail) already ended with: for
    output whose size is not counted. The longest overlap wins; none means all of it is new."""
    for k in range(min(len(shown), len(tail)), 0, -1):
        if shown[-k:] == tail[:k]:
            return tail[k:]
    return tail

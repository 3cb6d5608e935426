"""The users sandboxed workloads run as, when the agent runs as root: one uid per workload.

Each workload gets a uid (and a gid of the same number, with no supplementary groups) from a
configured range, recorded in its ``record.json`` and free again once the workload is removed.
The numbers need no ``/etc/passwd`` entry: the kernel only compares numbers, and bubblewrap and
``setgroups``/``setgid``/``setuid`` take them as they are. The default range lies above what
Linux distributions hand to people (1000-60000) and to ``/etc/subuid`` ranges, and above
systemd's container range (524288-1879048191), so no real account shares one of its ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gpuyard.core.ranges import parse_bounds

DEFAULT_UID_RANGE = "1900000000-1900065535"
_MAX_ID = 4294967294  # (uid_t)-1 means "no change" to the kernel


class NoFreeUid(RuntimeError):
    """Every uid of the range belongs to a workload that has not been removed."""


@dataclass(frozen=True, slots=True)
class UidRange:
    """An inclusive range of uids, e.g. ``1900000000-1900065535``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 1000 <= self.start <= self.end <= _MAX_ID:
            raise ValueError(
                f"bad uid range {self.start}-{self.end}: need 1000 <= start <= end <= {_MAX_ID} "
                "(the low uids belong to the system)"
            )

    @classmethod
    def parse(cls, text: str) -> UidRange:
        start, end = parse_bounds(text, what="uid range", example=DEFAULT_UID_RANGE)
        return cls(start=start, end=end)

    def allocate(self, taken: Iterable[int]) -> int:
        """The lowest uid of the range that ``taken`` does not hold."""
        held = {uid for uid in taken if self.start <= uid <= self.end}
        if len(held) > self.end - self.start:
            raise NoFreeUid(f"every uid of {self} belongs to a workload")
        uid = self.start
        while uid in held:
            uid += 1
        return uid

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.start <= uid <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

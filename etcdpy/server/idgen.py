"""Request and lease IDs unique across members, generated the way etcd does.

An ID is the member ID's low 16 bits, then 48 bits that start at the current Unix time in
milliseconds (40 bits) shifted left by 8, and count up by one per ID. Two members never
collide (different prefixes) and a restarted member starts above its earlier IDs as long as
it issued fewer than 256 IDs a millisecond on average, as etcd assumes.
"""

from __future__ import annotations

_SUFFIX_BITS = 48
_TIME_BITS = 40
_COUNT_BITS = 8
_SUFFIX_MASK = (1 << _SUFFIX_BITS) - 1


class IdGenerator:
    def __init__(self, member_id: int, now_ms: int) -> None:
        self._prefix = (member_id & 0xFFFF) << _SUFFIX_BITS
        self._suffix = (now_ms & ((1 << _TIME_BITS) - 1)) << _COUNT_BITS

    def next(self) -> int:
        """A new uint64 ID."""
        self._suffix = (self._suffix + 1) & _SUFFIX_MASK
        return self._prefix | self._suffix

    def next_lease_id(self) -> int:
        """A new positive int64 lease ID (etcd masks off the sign bit and never uses 0)."""
        while True:
            lease_id = self.next() & ((1 << 63) - 1)
            if lease_id:
                return lease_id

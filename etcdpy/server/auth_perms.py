"""Key-range permission sets: what the roles of one user allow, merged, and the coverage test.

etcd merges every permission of every role of a user into one interval set per kind (read,
write; READWRITE counts as both) and asks "is the requested range entirely covered?". A
permission with an empty range_end is the single key (the interval [key, key+"\\0")); a
range_end of "\\0" means "every key from key on". A request with an empty range_end is a
single-key request and is allowed when some interval holds that key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from etcdpy._pb.authpb import auth_pb2 as authpb

# Unbounded upper end of an interval (range_end "\0").
OPEN: bytes | None = None


class PermType(IntEnum):  # numbering of authpb.Permission.Type
    READ = 0
    WRITE = 1
    READWRITE = 2


@dataclass(frozen=True, slots=True)
class KeyInterval:
    """[start, end); end None = unbounded."""

    start: bytes
    end: bytes | None

    def __post_init__(self) -> None:
        assert self.end is None or self.start < self.end, (self.start, self.end)


def _interval(key: bytes, range_end: bytes) -> KeyInterval | None:
    """The interval a permission (or a request) names; None when it names nothing."""
    if not range_end:
        return KeyInterval(key, key + b"\0")
    if range_end == b"\0":
        return KeyInterval(key, OPEN)
    if range_end <= key:
        return None
    return KeyInterval(key, range_end)


class RangeSet:
    """A union of key intervals, kept merged: sorted, disjoint and non-adjacent."""

    def __init__(self, intervals: Iterable[KeyInterval] = ()) -> None:
        merged: list[KeyInterval] = []
        for ivl in sorted(intervals, key=lambda i: i.start):
            if merged:
                last = merged[-1]
                if last.end is None or ivl.start <= last.end:
                    end = None if last.end is None or ivl.end is None else max(last.end, ivl.end)
                    merged[-1] = KeyInterval(last.start, end)
                    continue
            merged.append(ivl)
        self._intervals = merged

    def __len__(self) -> int:
        return len(self._intervals)

    def covers(self, key: bytes, range_end: bytes) -> bool:
        """Does the union hold every key of the request (a key, or [key, range_end))?"""
        wanted = _interval(key, range_end) if range_end else None
        for ivl in self._intervals:
            if ivl.start > key:
                return False  # sorted: no later interval starts at or before key
            if wanted is None:
                # a single key (or a request range that names nothing, judged by its key)
                if ivl.end is None or key < ivl.end:
                    return True
                continue
            if ivl.end is None:
                return True
            if wanted.end is not None and wanted.end <= ivl.end:
                return True
        return False


@dataclass(frozen=True, slots=True)
class UserPerms:
    read: RangeSet
    write: RangeSet

    def allows(self, perm: PermType, key: bytes, range_end: bytes) -> bool:
        if perm == PermType.READ:
            return self.read.covers(key, range_end)
        if perm == PermType.WRITE:
            return self.write.covers(key, range_end)
        return self.read.covers(key, range_end) and self.write.covers(key, range_end)


def merge_roles(roles: Iterable[authpb.Role]) -> UserPerms:
    read: list[KeyInterval] = []
    write: list[KeyInterval] = []
    for role in roles:
        for perm in role.keyPermission:
            ivl = _interval(bytes(perm.key), bytes(perm.range_end))
            if ivl is None:
                continue  # an empty range grants nothing
            if perm.permType in (PermType.READ, PermType.READWRITE):
                read.append(ivl)
            if perm.permType in (PermType.WRITE, PermType.READWRITE):
                write.append(ivl)
    return UserPerms(RangeSet(read), RangeSet(write))

"""MVCC revisions and their on-disk key encoding (byte-identical to etcd's ``key`` bucket).

A revision is ``(main, sub)``: ``main`` is the store revision created by one write
request, ``sub`` numbers the key changes inside it.  On disk a revision is 17 bytes,
``main`` as 8-byte big-endian, a ``'_'`` separator, ``sub`` as 8-byte big-endian, so
LMDB's lexicographic order is revision order.  A deletion (tombstone) appends one
``'t'`` byte (18 bytes); since revisions are unique the mark never reorders keys.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

REV_BYTES_LEN: Final = 17
MARKED_REV_BYTES_LEN: Final = 18
MARK_TOMBSTONE: Final = b"t"
_REV = struct.Struct(">Q1sQ")
_SEP: Final = b"_"


@dataclass(frozen=True, slots=True, order=True)
class Revision:
    # invariant: 0 <= main < 2**63 and 0 <= sub < 2**63 (etcd uses int64)
    main: int
    sub: int = 0

    def __post_init__(self) -> None:
        assert 0 <= self.main < 1 << 63 and 0 <= self.sub < 1 << 63, self

    def to_bytes(self, tombstone: bool = False) -> bytes:
        b = _REV.pack(self.main, _SEP, self.sub)
        return b + MARK_TOMBSTONE if tombstone else b

    @staticmethod
    def from_bytes(b: bytes) -> Revision:
        assert len(b) in (REV_BYTES_LEN, MARKED_REV_BYTES_LEN), b
        main, sep, sub = _REV.unpack_from(b)
        assert sep == _SEP, b
        return Revision(main, sub)


def is_tombstone(b: bytes) -> bool:
    return len(b) == MARKED_REV_BYTES_LEN and b[-1:] == MARK_TOMBSTONE


def rev_bytes(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    """Fast path of :meth:`Revision.to_bytes` for hot loops."""
    b = _REV.pack(main, _SEP, sub)
    return b + MARK_TOMBSTONE if tombstone else b


def rev_main(b: bytes) -> int:
    return int.from_bytes(b[:8], "big")

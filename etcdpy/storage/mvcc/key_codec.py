"""Order-preserving encoding of user keys of any length into LMDB keys (<= 511 bytes).

etcd keys may be up to the request limit (1.5 MiB by default) but an LMDB key is at
most 511 bytes.  The index therefore stores each key under a *bucket key*:

* a short key ``k`` (``len(k) <= CUTOFF``) is stored as ``k + b"\\x00"`` and the
  bucket holds just that key;
* a long key is stored in the bucket ``k[:CUTOFF] + b"\\x01"``, whose value lists
  every long key with that prefix, sorted.

Why this preserves order (``tests/storage/test_key_codec.py`` checks it with
hypothesis against plain sorting): comparing two bucket keys, the first differing
byte either lies inside both key prefixes (then it is the first differing byte of
the keys themselves), or one key prefix is a prefix of the other.  In that case the
shorter side ends with its marker byte (``0`` or ``1``) where the other has either
a real key byte or its own marker; since a short key is a prefix of any longer key
it precedes, and marker 0 < marker 1, the shorter/prefix key sorts first, exactly
as bytes comparison of the user keys would.  Long keys sharing a prefix share one
bucket and are ordered inside it.  Inserting a new long key rewrites its bucket,
which is O(keys sharing the 480-byte prefix), paid once per key creation, never per
revision.
"""

from __future__ import annotations

import bisect
import struct
from typing import Final

CUTOFF: Final = 480
SHORT_MARK: Final = b"\x00"
LONG_MARK: Final = b"\x01"
_ENTRY_HDR = struct.Struct(">QI")
_KID = struct.Struct(">Q")


def bucket_key(key: bytes) -> bytes:
    if len(key) <= CUTOFF:
        return key + SHORT_MARK
    return key[:CUTOFF] + LONG_MARK


def is_long_bucket(bk: bytes) -> bool:
    return bk[-1:] == LONG_MARK


def short_key_of(bk: bytes) -> bytes:
    assert bk[-1:] == SHORT_MARK
    return bk[:-1]


def bucket_prefix(bk: bytes) -> bytes:
    return bk[:-1]


def encode_kid(kid: int) -> bytes:
    return _KID.pack(kid)


def decode_kid(b: bytes) -> int:
    return int(_KID.unpack(b)[0])


def decode_bucket(b: bytes) -> list[tuple[bytes, int]]:
    """A long-key bucket value: sorted ``(key, key id)`` pairs."""
    out: list[tuple[bytes, int]] = []
    i = 0
    mv = memoryview(b)
    while i < len(b):
        kid, ln = _ENTRY_HDR.unpack_from(b, i)
        i += _ENTRY_HDR.size
        out.append((bytes(mv[i : i + ln]), kid))
        i += ln
    return out


def encode_bucket(entries: list[tuple[bytes, int]]) -> bytes:
    assert all(a[0] < b[0] for a, b in zip(entries, entries[1:], strict=False)), "unsorted"
    parts: list[bytes] = []
    for key, kid in entries:
        parts.append(_ENTRY_HDR.pack(kid, len(key)))
        parts.append(key)
    return b"".join(parts)


def bucket_insert(entries: list[tuple[bytes, int]], key: bytes, kid: int) -> None:
    i = bisect.bisect_left(entries, (key,))
    assert i == len(entries) or entries[i][0] != key, "key already in bucket"
    entries.insert(i, (key, kid))


def bucket_find(entries: list[tuple[bytes, int]], key: bytes) -> int | None:
    i = bisect.bisect_left(entries, (key,))
    if i < len(entries) and entries[i][0] == key:
        return entries[i][1]
    return None

"""The MVCC key index, stored in LMDB so that a restart (or another process) can use it.

Two databases:

* ``kindex_keys``: bucket key (``key_codec``) -> key id (8 bytes) for a short key,
  or the sorted list of ``(key, key id)`` of a long-key bucket.  Scanning it in LMDB
  order visits user keys in byte order, which is what Range needs.
* ``kindex_revs``: ``key id(8) + main(8) + sub(8)`` -> ``b"t"`` (tombstone) or ``b""``.

Why a composite key per revision rather than a per-key value: appending a revision
is one B-tree insert, O(log n), however long the key's history is; looking up "the
revision visible at R" is one cursor ``set_range`` to ``id + (R+1, 0)`` followed by
one step back.  Why a key id rather than the user key as the prefix: user keys can be
far longer than an LMDB key; the id is 8 bytes, allocated from a counter in meta when
a key is first created (or re-created after compaction removed it entirely).

Every function takes the open LMDB transaction: the index changes in the same
transaction as the revision DB and the consistent index.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

import lmdb

from .. import schema
from . import key_codec
from .key_index import RevRecord, compact_plan
from .revision import Revision

_REVKEY = struct.Struct(">QQQ")
_KID8 = struct.Struct(">Q")
_TOMB: Final = b"t"
_LIVE: Final = b""


class Index:
    """Index operations within one LMDB transaction (read or write)."""

    __slots__ = ("_txn", "_keys", "_revs", "_meta", "_rcur")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[bytes, lmdb._Database]) -> None:
        self._txn = txn
        self._keys = dbs[schema.DB_KINDEX_KEYS]
        self._revs = dbs[schema.DB_KINDEX_REVS]
        self._meta = dbs[schema.DB_META]
        self._rcur = txn.cursor(self._revs)

    # --- key -> id ------------------------------------------------------------
    def find(self, key: bytes) -> int | None:
        bk = key_codec.bucket_key(key)
        v = self._txn.get(bk, db=self._keys)
        if v is None:
            return None
        if key_codec.is_long_bucket(bk):
            return key_codec.bucket_find(key_codec.decode_bucket(v), key)
        return key_codec.decode_kid(v)

    def create(self, key: bytes) -> int:
        """Add a key that is not in the index; returns its new id."""
        raw = self._txn.get(schema.META_NEXT_KEY_ID, db=self._meta)
        kid = key_codec.decode_kid(raw) if raw is not None else 1
        self._txn.put(schema.META_NEXT_KEY_ID, key_codec.encode_kid(kid + 1), db=self._meta)
        bk = key_codec.bucket_key(key)
        if key_codec.is_long_bucket(bk):
            v = self._txn.get(bk, db=self._keys)
            entries = key_codec.decode_bucket(v) if v is not None else []
            key_codec.bucket_insert(entries, key, kid)
            self._txn.put(bk, key_codec.encode_bucket(entries), db=self._keys)
        else:
            ok = self._txn.put(bk, key_codec.encode_kid(kid), db=self._keys, overwrite=False)
            assert ok, "create() of a key already in the index"
        return kid

    def remove(self, key: bytes) -> None:
        """Drop a key whose every revision was compacted away."""
        bk = key_codec.bucket_key(key)
        if key_codec.is_long_bucket(bk):
            v = self._txn.get(bk, db=self._keys)
            assert v is not None
            entries = [e for e in key_codec.decode_bucket(v) if e[0] != key]
            if entries:
                self._txn.put(bk, key_codec.encode_bucket(entries), db=self._keys)
            else:
                self._txn.delete(bk, db=self._keys)
        else:
            self._txn.delete(bk, db=self._keys)

    def iter_keys(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, int]]:
        """(key, id) for start <= key < end in key order; ``end=None`` means unbounded."""
        cur = self._txn.cursor(self._keys)
        if not cur.set_range(key_codec.bucket_key(start)):
            return
        for bk, v in cur:  # bounded by the DB size
            if key_codec.is_long_bucket(bk):
                prefix = key_codec.bucket_prefix(bk)
                if end is not None and prefix >= end:
                    return
                for key, kid in key_codec.decode_bucket(v):
                    if key < start:
                        continue
                    if end is not None and key >= end:
                        return
                    yield key, kid
            else:
                key = key_codec.short_key_of(bk)
                if end is not None and key >= end:
                    return
                if key >= start:
                    yield key, key_codec.decode_kid(v)

    def iter_buckets_from(self, after: bytes) -> Iterator[tuple[bytes, list[tuple[bytes, int]]]]:
        """Buckets strictly after bucket key ``after`` (b"" = from the start), with contents."""
        cur = self._txn.cursor(self._keys)
        if not cur.set_range(after):
            return
        for bk, v in cur:
            if bk == after:
                continue
            if key_codec.is_long_bucket(bk):
                yield bytes(bk), key_codec.decode_bucket(v)
            else:
                yield bytes(bk), [(key_codec.short_key_of(bk), key_codec.decode_kid(v))]

    # --- revisions of one key -------------------------------------------------
    def append(self, kid: int, rev: Revision, tombstone: bool) -> None:
        self._txn.put(
            _REVKEY.pack(kid, rev.main, rev.sub), _TOMB if tombstone else _LIVE, db=self._revs
        )

    def latest(self, kid: int) -> RevRecord | None:
        return self._before(kid, _REVKEY.pack(kid + 1, 0, 0))

    def get(self, kid: int, at_main: int) -> RevRecord | None:
        """The newest record with main <= at_main (a put or a tombstone), if any."""
        return self._before(kid, _REVKEY.pack(kid, at_main + 1, 0))

    def live_at(self, kid: int, at_main: int) -> bytes | None:
        """Fast path of :meth:`get` for Range: the 16-byte (main, sub) of the put
        visible at ``at_main``, or None when the key is absent or deleted there."""
        cur = self._rcur
        if cur.set_range(_REVKEY.pack(kid, at_main + 1, 0)):
            if not cur.prev():
                return None
        elif not cur.last():
            return None
        k = cur.key()
        if k[:8] != _KID8.pack(kid) or cur.value() == _TOMB:
            return None
        return k[8:]

    def before(self, kid: int, rev: Revision) -> RevRecord | None:
        """The newest record strictly before ``rev`` (for an event's prev_kv)."""
        return self._before(kid, _REVKEY.pack(kid, rev.main, rev.sub))

    def _before(self, kid: int, bound: bytes) -> RevRecord | None:
        cur = self._rcur
        if cur.set_range(bound):
            if not cur.prev():
                return None
        elif not cur.last():
            return None
        k = cur.key()
        k_id, main, sub = _REVKEY.unpack(k)
        if k_id != kid:
            return None
        return RevRecord(Revision(main, sub), cur.value() == _TOMB)

    def history(
        self, kid: int, upto_main: int | None = None, from_main: int = 0
    ) -> list[RevRecord]:
        """Records of a key in order, from_main <= main (<= upto_main if given)."""
        out: list[RevRecord] = []
        cur = self._txn.cursor(self._revs)
        if not cur.set_range(_REVKEY.pack(kid, from_main, 0)):
            return out
        for k, v in cur:  # bounded by the key's history
            k_id, main, sub = _REVKEY.unpack(k)
            if k_id != kid or (upto_main is not None and main > upto_main):
                break
            out.append(RevRecord(Revision(main, sub), v == _TOMB))
        return out

    def compact_key(self, kid: int, at_main: int) -> tuple[list[RevRecord], bool]:
        """Apply etcd's keyIndex compaction to one key.

        Returns (removed records, key now empty).  The caller deletes the removed
        revisions from the revision DB and, when empty, the key from the key DB.
        """
        upto = self.history(kid, at_main)
        removed, _kept = compact_plan(upto)
        for rec in removed:
            self._txn.delete(_REVKEY.pack(kid, rec.rev.main, rec.rev.sub), db=self._revs)
        empty = self.latest(kid) is None
        return removed, empty

    def kept_at(self, kid: int, at_main: int) -> Revision | None:
        """The revision compaction at ``at_main`` keeps for this key (etcd's Keep)."""
        rec = self.get(kid, at_main)
        if rec is None or rec.tombstone:
            return None
        return rec.rev

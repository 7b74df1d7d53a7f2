"""HashKV: the CRC-32C etcd members compare to detect divergent state.

What etcd 3.5 hashes (verified against a real etcd 3.5.1 in
``tests/storage/test_hashkv_vs_etcd.py``): the bucket name ``key``, then, in
revision order, every (revision key, stored KeyValue bytes) with main <= rev.
Revisions at or below the compaction point are included only if they are in the
set a compaction at ``rev`` would keep (per key, the newest revision <= rev if it is
a put) -- so a member that has physically compacted and one that has not yet agree.
When that keep set is empty etcd applies no filter at all, and neither do we.
"""

from __future__ import annotations

import lmdb

from .hashing import crc32c_update
from .index import Index
from .revision import Revision

KEY_DB_NAME = b"key"


def keep_set(idx: Index, at: int) -> set[Revision]:
    """etcd's ``Keep(at)``: for each key the revision visible at ``at``, if a put."""
    keep: set[Revision] = set()
    for _key, kid in idx.iter_keys(b"", None):  # bounded by the number of keys
        r = idx.kept_at(kid, at)
        if r is not None:
            keep.add(r)
    return keep


def hash_by_rev(
    txn: lmdb.Transaction, idx: Index, kvdb: lmdb._Database, rev: int, compact_rev: int
) -> int:
    keep: set[Revision] | None = None  # computed only if an old revision is met
    h = crc32c_update(0, KEY_DB_NAME)
    for k, v in txn.cursor(kvdb):  # bounded by the revision DB
        r = Revision.from_bytes(k)
        if r.main > rev:
            break
        if r.main <= compact_rev:
            if keep is None:
                keep = keep_set(idx, rev)
            if keep and r not in keep:
                continue
        h = crc32c_update(h, k)
        h = crc32c_update(h, v)
    return h

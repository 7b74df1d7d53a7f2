"""Physical compaction: remove the revisions a scheduled compaction made unreadable.

Scheduling (``WriteBatch.schedule_compaction``) only records the compaction point;
reads below it fail from then on.  This module deletes the old revisions from the
revision DB and the key index, a bounded number of index buckets per LMDB write
transaction so the writer is never blocked for long, recording after each
transaction the last bucket done (``compact_progress`` in meta).  After a crash or
restart the next call continues from there; redoing a bucket is harmless because
compacting a key twice at the same point removes nothing the second time.  When the
walk reaches the end it records ``finishedCompactRev`` (the name etcd uses).
"""

from __future__ import annotations

import struct
from typing import Final

from .. import schema
from ..env import LmdbEnv
from .index import Index

DEFAULT_COMPACT_BATCH_KEYS: Final = 1000
_I64 = struct.Struct(">q")


def compact_batch(env: LmdbEnv, at: int, max_keys: int) -> bool:
    """Compact up to ``max_keys`` buckets at revision ``at``; True when the walk is done."""
    assert max_keys > 0
    env.ensure_headroom()
    dbs = env.dbs
    meta = dbs[schema.DB_META]
    kvdb = dbs[schema.DB_KEY]
    with env.begin(write=True) as txn:
        idx = Index(txn, dbs)
        progress = txn.get(schema.META_COMPACT_PROGRESS, db=meta) or b""
        # materialise the batch first: compaction deletes from the DB being walked
        buckets = []
        for item in idx.iter_buckets_from(progress):
            buckets.append(item)
            if len(buckets) > max_keys:
                break
        finished = len(buckets) <= max_keys
        buckets = buckets[:max_keys]
        for _bk, entries in buckets:
            for key, kid in entries:
                removed, empty = idx.compact_key(kid, at)
                for rec in removed:
                    txn.delete(rec.rev.to_bytes(rec.tombstone), db=kvdb)
                if empty:
                    idx.remove(key)
        if finished:
            txn.put(schema.META_FINISHED_COMPACT_REV, _I64.pack(at), db=meta)
            txn.put(schema.META_COMPACT_PROGRESS, b"", db=meta)
        else:
            txn.put(schema.META_COMPACT_PROGRESS, buckets[-1][0], db=meta)
    return finished

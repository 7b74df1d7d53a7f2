"""The MVCC key-value store over the state environment.

Reads: ``store.read()`` opens one LMDB read transaction (a consistent snapshot) and
returns a :class:`ReadView`; ``ReadView.range`` follows etcd's Range rules.

Writes: the applier applies a *batch* of committed Raft entries in one LMDB write
transaction::

    with store.write_batch(applied_index) as batch:
        w = batch.txn()                  # one per write request / Txn request
        w.put(b"k", b"v")
        w.delete_range(b"a", b"b")
        events = w.end()                 # one main revision if anything changed

The applied ("consistent") index, the current revision and any lease changes are
written in that same LMDB transaction, so after a crash the stored index describes
the stored data exactly and replaying the Raft log from it is idempotent.  An
exception inside the ``with`` aborts the whole batch: nothing is half-applied.

Compaction: ``batch.schedule_compaction(rev)`` records the compaction point (reads
below it fail from then on); ``store.compact_step()`` removes the old revisions
physically, a bounded number of keys per LMDB transaction, recording its progress
so a restart resumes where it stopped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import lmdb

from .. import schema
from ..env import LmdbEnv
from ..errors import CompactedError, FutureRevisionError, LeaseExistsError, LeaseNotFoundError
from ..lease_store import LeaseRecord, decode_lease, encode_lease, lease_key
from . import key_codec
from .compaction import DEFAULT_COMPACT_BATCH_KEYS, compact_batch
from .hash_kv import hash_by_rev
from .index import Index
from .kv_codec import Event, EventType, KeyValue, decode_kv, encode_kv
from .revision import Revision, is_tombstone, rev_bytes

_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
NO_COMPACTION: Final = -1


def _get_u64(txn: lmdb.Transaction, key: bytes, db: lmdb._Database, default: int) -> int:
    v = txn.get(key, db=db)
    return default if v is None else int(_U64.unpack(v)[0])


def _get_i64(txn: lmdb.Transaction, key: bytes, db: lmdb._Database, default: int) -> int:
    v = txn.get(key, db=db)
    return default if v is None else int(_I64.unpack(v)[0])


def range_bounds(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None, bool]:
    """etcd's range rules -> (start, end or None for unbounded, single key?)."""
    if not range_end:
        return key, None, True
    if range_end == b"\x00":
        return key, None, False  # from key (key "\0" + end "\0" = everything)
    return key, range_end, False


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: tuple[KeyValue, ...]
    count: int
    more: bool
    rev: int  # the store's current revision (header revision), not the one read at
    # with ``raw=True``: the stored mvccpb.KeyValue wire bytes instead of ``kvs``, so
    # the server can hand them to protobuf (or splice them into a RangeResponse)
    # without decoding each one in Python
    raw_kvs: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreMeta:
    consistent_index: int
    current_rev: int
    compact_rev: int  # scheduled compaction revision, -1 = never compacted
    finished_compact_rev: int
    term: int = 0  # Raft term of the entry at consistent_index (etcd keeps it too)


def _read_meta(txn: lmdb.Transaction, meta: lmdb._Database) -> StoreMeta:
    return StoreMeta(
        consistent_index=_get_u64(txn, schema.META_CONSISTENT_INDEX, meta, 0),
        # an empty store is at revision 1, like etcd
        current_rev=_get_i64(txn, schema.META_CURRENT_REV, meta, 1),
        compact_rev=_get_i64(txn, schema.META_SCHEDULED_COMPACT_REV, meta, NO_COMPACTION),
        finished_compact_rev=_get_i64(txn, schema.META_FINISHED_COMPACT_REV, meta, NO_COMPACTION),
        term=_get_u64(txn, schema.META_TERM, meta, 0),
    )


class _Reader:
    """Range logic shared by read views and write transactions."""

    _txn: lmdb.Transaction
    _dbs: dict[bytes, lmdb._Database]
    _index: Index

    def _range_at(
        self,
        key: bytes,
        range_end: bytes,
        at_rev: int,
        current_rev: int,
        limit: int,
        count_only: bool,
        keys_only: bool,
        raw: bool = False,
    ) -> RangeResult:
        start, end, single = range_bounds(key, range_end)
        kvdb = self._dbs[schema.DB_KEY]
        idx = self._index
        kvs: list[KeyValue] = []
        raws: list[bytes] = []
        count = 0
        if single:
            kid = idx.find(key)
            candidates: Iterator[tuple[bytes, int]] = iter(
                [] if kid is None else [(key, kid)]
            )
        else:
            candidates = idx.iter_keys(start, end)
        live_at = idx.live_at
        get = self._txn.get
        for _key, kid in candidates:
            ms = live_at(kid, at_rev)
            if ms is None:
                continue
            count += 1
            if count_only or (limit and len(kvs) + len(raws) >= limit):
                continue
            stored = get(ms[:8] + b"_" + ms[8:], db=kvdb)
            assert stored is not None, f"index names a revision missing from the key DB: {ms!r}"
            if raw and not keys_only:
                raws.append(stored)
                continue
            kv = decode_kv(stored)
            if keys_only:
                kv = KeyValue(
                    kv.key, kv.create_revision, kv.mod_revision, kv.version, b"", kv.lease
                )
            if raw:
                raws.append(encode_kv(kv))
            else:
                kvs.append(kv)
        more = bool(limit) and count > limit
        return RangeResult(tuple(kvs), count, more, current_rev, tuple(raws))

    def _latest_kv(self, kid: int) -> tuple[Revision, KeyValue] | None:
        rec = self._index.latest(kid)
        if rec is None or rec.tombstone:
            return None
        raw = self._txn.get(rev_bytes(rec.rev.main, rec.rev.sub), db=self._dbs[schema.DB_KEY])
        assert raw is not None
        return rec.rev, decode_kv(raw)


class ReadView(_Reader):
    """A consistent snapshot of the store (one LMDB read transaction)."""

    def __init__(self, env: LmdbEnv) -> None:
        self._txn = env.begin(write=False)
        self._dbs = env.dbs
        self._index = Index(self._txn, env.dbs)
        self.meta = _read_meta(self._txn, env.dbs[schema.DB_META])

    @property
    def rev(self) -> int:
        return self.meta.current_rev

    @property
    def first_rev(self) -> int:
        return self.meta.compact_rev

    def check_rev(self, rev: int) -> int:
        """Resolve a requested revision (<= 0 = current) or raise the etcd error."""
        if rev <= 0:
            return self.meta.current_rev
        if rev > self.meta.current_rev:
            raise FutureRevisionError()
        if rev < self.meta.compact_rev:
            raise CompactedError()
        return rev

    def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        limit: int = 0,
        rev: int = 0,
        count_only: bool = False,
        keys_only: bool = False,
        raw: bool = False,
    ) -> RangeResult:
        at = self.check_rev(rev)
        return self._range_at(
            key, range_end, at, self.meta.current_rev, limit, count_only, keys_only, raw
        )

    def leases(self) -> list[tuple[LeaseRecord, list[bytes]]]:
        """Every persisted lease with its attached keys (for rebuilding a Lessor)."""
        out: list[tuple[LeaseRecord, list[bytes]]] = []
        lk = self._txn.cursor(self._dbs[schema.DB_LEASE_KEYS])
        for _k, v in self._txn.cursor(self._dbs[schema.DB_LEASE]):
            rec = decode_lease(v)
            keys: list[bytes] = []
            prefix = lease_key(rec.id)
            if lk.set_range(prefix):
                for k2, user_key in lk:
                    if k2[:8] != prefix:
                        break
                    keys.append(bytes(user_key))
            out.append((rec, keys))
        return out

    def close(self) -> None:
        self._txn.abort()

    def __enter__(self) -> ReadView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WriteTxn(_Reader):
    """One write request (Put, DeleteRange, Txn, LeaseRevoke...) inside a batch.

    All changes get the same main revision ``begin_rev + 1`` and increasing subs;
    ``end()`` commits the revision to the batch only if something changed.

    Domain errors (``LeaseNotFoundError``, ``LeaseExistsError``) are raised before
    the failing call changes anything, so the applier may catch one, ``end()`` the
    request and carry on with the batch; anything else should abort the batch.
    """

    def __init__(self, batch: WriteBatch) -> None:
        self._batch = batch
        self._txn = batch._txn
        self._dbs = batch._dbs
        self._index = batch._index
        self.begin_rev = batch.current_rev
        self._sub = 0
        self._events: list[Event] = []
        self._ended = False

    @property
    def rev(self) -> int:
        """The main revision this request writes."""
        return self.begin_rev + 1

    def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        limit: int = 0,
        rev: int = 0,
        count_only: bool = False,
        keys_only: bool = False,
        raw: bool = False,
    ) -> RangeResult:
        """Reads see this request's own earlier writes (etcd does the same)."""
        cur = self.begin_rev + 1 if self._events else self.begin_rev
        meta = self._batch.meta
        if rev <= 0:
            at = cur
        elif rev > cur:
            raise FutureRevisionError()
        elif rev < meta.compact_rev:
            raise CompactedError()
        else:
            at = rev
        return self._range_at(key, range_end, at, cur, limit, count_only, keys_only, raw)

    def _next_rev(self) -> Revision:
        r = Revision(self.begin_rev + 1, self._sub)
        self._sub += 1
        return r

    def put(self, key: bytes, value: bytes, lease: int = 0) -> Event:
        assert not self._ended
        txn, dbs, idx = self._txn, self._dbs, self._index
        if lease and txn.get(lease_key(lease), db=dbs[schema.DB_LEASE]) is None:
            raise LeaseNotFoundError()
        kid = idx.find(key)
        prev: KeyValue | None = None
        if kid is None:
            kid = idx.create(key)
        else:
            latest = self._latest_kv(kid)
            if latest is not None:
                prev = latest[1]
        rev = self._next_rev()
        if prev is not None:
            create, version = prev.create_revision, prev.version + 1
        else:
            create, version = rev.main, 1
        kv = KeyValue(key, create, rev.main, version, value, lease)
        txn.put(rev.to_bytes(), encode_kv(kv), db=dbs[schema.DB_KEY])
        idx.append(kid, rev, tombstone=False)
        old_lease = prev.lease if prev is not None else 0
        if old_lease != lease:
            if old_lease:
                txn.delete(lease_key(old_lease) + key_codec.encode_kid(kid),
                           db=dbs[schema.DB_LEASE_KEYS])
            if lease:
                txn.put(lease_key(lease) + key_codec.encode_kid(kid), key,
                        db=dbs[schema.DB_LEASE_KEYS])
        ev = Event(EventType.PUT, kv, prev)
        self._events.append(ev)
        return ev

    def delete_range(self, key: bytes, range_end: bytes = b"") -> list[Event]:
        """Delete every live key in the range; returns the DELETE events (with prev_kv)."""
        assert not self._ended
        start, end, single = range_bounds(key, range_end)
        idx = self._index
        if single:
            kid = idx.find(key)
            targets = [] if kid is None else [(key, kid)]
        else:
            # materialise first: we write to the index while deleting
            targets = list(idx.iter_keys(start, end))
        out: list[Event] = []
        for k, kid in targets:
            latest = self._latest_kv(kid)
            if latest is None:
                continue
            out.append(self._delete_one(k, kid, latest[1]))
        return out

    def _delete_one(self, key: bytes, kid: int, prev: KeyValue) -> Event:
        txn, dbs = self._txn, self._dbs
        rev = self._next_rev()
        # etcd stores a tombstone as KeyValue{key} under the 't'-marked revision
        txn.put(rev.to_bytes(tombstone=True), encode_kv(KeyValue(key)), db=dbs[schema.DB_KEY])
        self._index.append(kid, rev, tombstone=True)
        if prev.lease:
            txn.delete(lease_key(prev.lease) + key_codec.encode_kid(kid),
                       db=dbs[schema.DB_LEASE_KEYS])
        ev = Event(EventType.DELETE, KeyValue(key, mod_revision=rev.main), prev)
        self._events.append(ev)
        return ev

    # --- leases (persisted in the same transaction as the keys) ---------------
    def lease_grant(self, lease_id: int, ttl: int) -> LeaseRecord:
        assert lease_id != 0, "lease id 0 means no lease"
        db = self._dbs[schema.DB_LEASE]
        rec = LeaseRecord(lease_id, ttl, 0)
        if not self._txn.put(lease_key(lease_id), encode_lease(rec), db=db, overwrite=False):
            raise LeaseExistsError()
        return rec

    def lease_revoke(self, lease_id: int) -> list[Event]:
        """Remove the lease and delete its keys, all in this request's revision."""
        txn, dbs = self._txn, self._dbs
        if not txn.delete(lease_key(lease_id), db=dbs[schema.DB_LEASE]):
            raise LeaseNotFoundError()
        prefix = lease_key(lease_id)
        cur = txn.cursor(dbs[schema.DB_LEASE_KEYS])
        attached: list[bytes] = []
        if cur.set_range(prefix):
            for k, v in cur:
                if k[:8] != prefix:
                    break
                attached.append(bytes(v))
        attached.sort()  # delete in key order, as etcd does, so subs are deterministic
        out: list[Event] = []
        for key in attached:
            out.extend(self.delete_range(key))
        return out

    def lease_checkpoint(self, lease_id: int, remaining_ttl: int) -> None:
        db = self._dbs[schema.DB_LEASE]
        raw = self._txn.get(lease_key(lease_id), db=db)
        if raw is None:
            raise LeaseNotFoundError()
        old = decode_lease(raw)
        rec = LeaseRecord(old.id, old.ttl, remaining_ttl)
        self._txn.put(lease_key(lease_id), encode_lease(rec), db=db)

    def end(self) -> list[Event]:
        """Finish the request; returns its change events (empty for a read-only one)."""
        assert not self._ended
        self._ended = True
        self._batch._end_txn(self)
        return list(self._events)

    @property
    def changed(self) -> bool:
        return bool(self._events)


class WriteBatch:
    """One LMDB write transaction applying a batch of committed Raft entries."""

    def __init__(
        self, store: KVStore, applied_index: int, term: int = 0, reserve_bytes: int = 0
    ) -> None:
        self._store = store
        # grow the map *before* the transaction: LMDB cannot resize inside one, and a
        # full map would abort the whole batch.  Copy-on-write touches each page on the
        # path to a change, hence the generous factor over the payload size.
        store.env.ensure_headroom(4 * reserve_bytes)
        self._txn = store.env.begin(write=True)
        self._dbs = store.env.dbs
        self._index = Index(self._txn, self._dbs)
        self.meta = _read_meta(self._txn, self._dbs[schema.DB_META])
        # invariant: the consistent index never moves backwards; the applier skips
        # entries at or below it after a restart, which makes replay idempotent
        assert applied_index >= self.meta.consistent_index, (
            applied_index, self.meta.consistent_index)
        self.applied_index = applied_index
        # the term never goes back either; 0 = caller does not track terms
        self.term = max(term, self.meta.term)
        self.current_rev = self.meta.current_rev
        self._open: WriteTxn | None = None

    @property
    def dbs(self) -> dict[bytes, lmdb._Database]:
        return self._dbs

    def txn(self) -> WriteTxn:
        assert self._open is None, "previous WriteTxn not ended"
        self._open = WriteTxn(self)
        return self._open

    def _end_txn(self, w: WriteTxn) -> None:
        assert self._open is w
        self._open = None
        if w.changed:
            self.current_rev = w.begin_rev + 1

    @property
    def raw_txn(self) -> lmdb.Transaction:
        """The batch's LMDB transaction, for other state written atomically with it
        (e.g. ``members.Members(batch.raw_txn, env.dbs)`` for a conf change)."""
        return self._txn

    def set_applied_index(self, index: int, term: int = 0) -> None:
        """Advance the index written at commit (entries applied one by one in a batch)."""
        assert index >= self.applied_index
        self.applied_index = index
        self.term = max(self.term, term)

    def schedule_compaction(self, rev: int) -> None:
        """Record a compaction at ``rev`` (etcd Compact semantics for the error cases)."""
        if rev <= self.meta.compact_rev:
            raise CompactedError()
        if rev > self.current_rev:
            raise FutureRevisionError()
        meta = self._dbs[schema.DB_META]
        self._txn.put(schema.META_SCHEDULED_COMPACT_REV, _I64.pack(rev), db=meta)
        self._txn.put(schema.META_COMPACT_PROGRESS, b"", db=meta)
        self.meta = StoreMeta(
            self.meta.consistent_index, self.meta.current_rev, rev,
            self.meta.finished_compact_rev, self.meta.term,
        )

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._txn.abort()
            return
        assert self._open is None, "WriteTxn not ended before the batch committed"
        meta = self._dbs[schema.DB_META]
        self._txn.put(schema.META_CONSISTENT_INDEX, _U64.pack(self.applied_index), db=meta)
        if self.term:
            self._txn.put(schema.META_TERM, _U64.pack(self.term), db=meta)
        self._txn.put(schema.META_CURRENT_REV, _I64.pack(self.current_rev), db=meta)
        self._txn.commit()
        self._store._committed(self)


class KVStore:
    """MVCC store over the state environment (single writer; any number of readers)."""

    def __init__(self, env: LmdbEnv) -> None:
        self.env = env
        with env.begin() as txn:
            self._meta = _read_meta(txn, env.dbs[schema.DB_META])

    # --- cached meta (the writer's view) ---------------------------------------
    @property
    def current_rev(self) -> int:
        return self._meta.current_rev

    @property
    def compact_rev(self) -> int:
        return self._meta.compact_rev

    @property
    def finished_compact_rev(self) -> int:
        return self._meta.finished_compact_rev

    @property
    def consistent_index(self) -> int:
        return self._meta.consistent_index

    @property
    def term(self) -> int:
        return self._meta.term

    def compaction_pending(self) -> bool:
        return self._meta.compact_rev > self._meta.finished_compact_rev

    def refresh(self) -> StoreMeta:
        """Re-read meta from LMDB (read-only users in another process)."""
        with self.env.begin() as txn:
            self._meta = _read_meta(txn, self.env.dbs[schema.DB_META])
        return self._meta

    # --- reads -----------------------------------------------------------------
    def read(self) -> ReadView:
        return ReadView(self.env)

    def range(
        self, key: bytes, range_end: bytes = b"", limit: int = 0, rev: int = 0,
        count_only: bool = False, keys_only: bool = False, raw: bool = False,
    ) -> RangeResult:
        with self.read() as rv:
            return rv.range(key, range_end, limit, rev, count_only, keys_only, raw)

    def events(
        self, key: bytes, range_end: bytes, start_rev: int, end_rev: int = 0,
        limit: int = 1000, prev_kv: bool = False,
    ) -> list[Event]:
        """History in revision order, start_rev <= main < end_rev (0 = no end), for watch.

        About ``limit`` events are returned: the events of one revision are never
        split across calls (watch responses must be atomic per revision), so the
        last revision is completed even past the limit.  Call again from the last
        returned revision + 1.  A single-key watch reads only that key's revisions
        through the index; a range watch walks the revision DB from ``start_rev``.
        """
        assert limit > 0
        start, end, single = range_bounds(key, range_end)
        kvdb = self.env.dbs[schema.DB_KEY]
        with self.read() as rv:
            if start_rev < rv.meta.compact_rev:
                raise CompactedError()
            first = max(start_rev, 0)
            source: Iterator[tuple[bytes, bytes]]
            if single:
                source = _key_history(rv, kvdb, key, first)
            else:
                cur = rv._txn.cursor(kvdb)
                if not cur.set_range(rev_bytes(first)):
                    return []
                source = iter(cur)
            out: list[Event] = []
            full_at = -1  # main revision at which the limit was reached
            for k, v in source:  # ends at end_rev, or after the revision filling limit
                r = Revision.from_bytes(k)
                if end_rev and r.main >= end_rev:
                    break
                if full_at >= 0 and r.main != full_at:
                    break
                kv = decode_kv(v)
                if not single and (kv.key < start or (end is not None and kv.key >= end)):
                    continue
                prev: KeyValue | None = None
                if prev_kv:
                    prev = self._prev_kv(rv, kv.key, r)
                if is_tombstone(k):
                    out.append(Event(EventType.DELETE, KeyValue(kv.key, mod_revision=r.main), prev))
                else:
                    out.append(Event(EventType.PUT, kv, prev))
                if len(out) >= limit and full_at < 0:
                    full_at = r.main
            return out

    def _prev_kv(self, rv: ReadView, key: bytes, rev: Revision) -> KeyValue | None:
        kid = rv._index.find(key)
        if kid is None:
            return None
        rec = rv._index.before(kid, rev)
        if rec is None or rec.tombstone:
            return None
        raw = rv._txn.get(rec.rev.to_bytes(), db=self.env.dbs[schema.DB_KEY])
        return None if raw is None else decode_kv(raw)

    # --- writes ----------------------------------------------------------------
    def write_batch(
        self, applied_index: int, term: int = 0, reserve_bytes: int = 0
    ) -> WriteBatch:
        """Open the batch applying committed entries up to ``applied_index`` (of ``term``).

        ``reserve_bytes``: roughly the payload the batch will write (the sum of the
        entries' sizes), so the map can be grown beforehand.
        """
        assert not self.env.readonly
        return WriteBatch(self, applied_index, term, reserve_bytes)

    def _committed(self, batch: WriteBatch) -> None:
        self._meta = StoreMeta(
            batch.applied_index, batch.current_rev, batch.meta.compact_rev,
            self._meta.finished_compact_rev, batch.term,
        )

    # --- physical compaction -----------------------------------------------------
    def compact_step(self, max_keys: int = DEFAULT_COMPACT_BATCH_KEYS) -> bool:
        """Compact up to ``max_keys`` index buckets in one LMDB transaction.

        Returns True when the scheduled compaction is physically complete.  Must not
        be called while a write batch is open (LMDB has one writer).
        """
        if not self.compaction_pending():
            return True
        at = self._meta.compact_rev
        finished = compact_batch(self.env, at, max_keys)
        if finished:
            m = self._meta
            self._meta = StoreMeta(m.consistent_index, m.current_rev, m.compact_rev, at, m.term)
        return finished

    def run_compaction(self, max_keys_per_txn: int = DEFAULT_COMPACT_BATCH_KEYS) -> None:
        # bounded: each step advances past max_keys buckets, the index is finite
        while not self.compact_step(max_keys_per_txn):
            pass

    # --- hashing ------------------------------------------------------------------
    def hash_kv(self, rev: int = 0) -> tuple[int, int, int]:
        """(hash, current_rev, compact_rev) exactly as etcd 3.5's HashKV computes them
        (see ``hash_kv.py``).  Like etcd 3.5, a revision equal to the compaction point
        counts as compacted."""
        with self.read() as rv:
            m = rv.meta
            if 0 < rev <= m.compact_rev:
                raise CompactedError()
            if rev > m.current_rev:
                raise FutureRevisionError()
            if rev <= 0:
                rev = m.current_rev
            h = hash_by_rev(rv._txn, rv._index, self.env.dbs[schema.DB_KEY], rev, m.compact_rev)
            return h, m.current_rev, m.compact_rev


def _key_history(
    rv: ReadView, kvdb: lmdb._Database, key: bytes, first_main: int
) -> Iterator[tuple[bytes, bytes]]:
    """(revision key, stored value) of one key's changes with main >= first_main."""
    kid = rv._index.find(key)
    if kid is None:
        return
    for rec in rv._index.history(kid, from_main=first_main):  # bounded by its history
        k = rec.rev.to_bytes(rec.tombstone)
        v = rv._txn.get(k, db=kvdb)
        assert v is not None, f"index names a revision missing from the key DB: {rec}"
        yield k, v

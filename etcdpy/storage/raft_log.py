"""``LmdbRaftStorage``: the Raft log, hard state and snapshot in the raft LMDB env.

It implements ``etcdpy.raft.storage.LogStorage`` (the read side the core uses) plus
the writer side the driver calls after each Ready.  Layout (``schema.py``):

* ``raft_log``: ``index`` (u64 big-endian, so LMDB order is log order) -> a 9-byte
  header ``term u64, type u8`` followed by the entry data.  No pickle: the format is
  fixed and readable by any process.
* ``raft_meta``: the hard state, the *log start* (index and term of the entry just
  before the first stored one -- etcd's "dummy entry", the compaction point), the
  snapshot metadata and data, the member and cluster ids.

Invariants (asserted on open and on writes): ``first_index() == log_start.index + 1``;
every index in ``[first_index(), last_index()]`` is stored, contiguously; the log
start may lie below or above the snapshot index (compaction and snapshots are
independent, as in etcd's MemoryStorage) except that installing a snapshot resets the
log start to it.

``first/last index`` and the last term are cached so ``term()`` of the last entry
and ``last_index()`` cost no LMDB access; ``entries()`` and ``term(i)`` read only the
entries asked for (one cursor walk), never the whole log. The newest entries written are
also kept in memory (``RecentEntries``): the core reads what it has just persisted (to apply
it, and to send it to followers that acknowledged the entries before), and decoding it back
from LMDB every time was a measurable share of a busy loop.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import lmdb

from ..raft.errors import Compacted, SnapshotOutOfDate, Unavailable
from ..raft.storage import limit_size
from ..raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMetadata,
)
from . import schema
from .env import LmdbEnv

_IDX = struct.Struct(">Q")
_ENTRY_HDR = struct.Struct(">QB")
_HS = struct.Struct(">QQQ")
_START = struct.Struct(">QQ")
_SNAP_HDR = struct.Struct(">QQII")  # index, term, n voters, n learners
_ENTRY_OVERHEAD = 16  # matches Entry.size()


def encode_entry(e: Entry) -> bytes:
    return _ENTRY_HDR.pack(e.term, int(e.type)) + e.data


def decode_entry(index: int, b: bytes) -> Entry:
    term, typ = _ENTRY_HDR.unpack_from(b)
    return Entry(term=term, index=index, type=EntryType(typ), data=bytes(b[_ENTRY_HDR.size :]))


def encode_snapshot_meta(m: SnapshotMetadata) -> bytes:
    cs = m.conf_state
    ids = cs.voters + cs.learners
    return _SNAP_HDR.pack(m.index, m.term, len(cs.voters), len(cs.learners)) + struct.pack(
        f">{len(ids)}Q", *ids
    )


def decode_snapshot_meta(b: bytes) -> SnapshotMetadata:
    index, term, nv, nl = _SNAP_HDR.unpack_from(b)
    ids = struct.unpack_from(f">{nv + nl}Q", b, _SNAP_HDR.size)
    cs = ConfState(voters=tuple(ids[:nv]), learners=tuple(ids[nv:]))
    return SnapshotMetadata(conf_state=cs, index=index, term=term)


@dataclass(frozen=True, slots=True)
class LogBounds:
    start_index: int  # the dummy entry: last compacted (or snapshot) index
    start_term: int
    last_index: int
    last_term: int

    def __post_init__(self) -> None:
        assert self.start_index <= self.last_index, self


TAIL_MAX_ENTRIES: Final = 2048
TAIL_MAX_BYTES: Final = 8 << 20


@dataclass(frozen=True, slots=True)
class RecentEntries:
    """The newest entries saved, contiguous from `first`. Never changed in place: the writer
    thread replaces the whole value, so the loop thread reading it sees one consistent tail.
    Invariant: entries[i].index == first + i; nbytes == sum of their sizes."""

    first: int
    entries: tuple[Entry, ...] = ()
    nbytes: int = 0

    def covers(self, lo: int, hi: int) -> bool:
        return self.first <= lo and hi <= self.first + len(self.entries)

    def after_append(self, ents: Sequence[Entry]) -> RecentEntries:
        """The tail once `ents` (contiguous) replaced everything from their first index on."""
        first = ents[0].index
        if self.first <= first <= self.first + len(self.entries):
            kept = self.entries[: first - self.first]
            nbytes = self.nbytes - sum(e.size() for e in self.entries[len(kept):])
            start = self.first
        else:  # not adjacent (a snapshot moved the log): start over from these
            kept, nbytes, start = (), 0, first
        entries = kept + tuple(ents)
        nbytes += sum(e.size() for e in ents)
        drop = max(0, len(entries) - TAIL_MAX_ENTRIES)
        nbytes -= sum(e.size() for e in entries[:drop])
        while drop < len(entries) - 1 and nbytes > TAIL_MAX_BYTES:
            nbytes -= entries[drop].size()
            drop += 1
        if drop:
            entries, start = entries[drop:], start + drop
        tail = RecentEntries(start, entries, nbytes)
        assert not entries or entries[0].index == start and entries[-1].index == ents[-1].index
        return tail


class LmdbRaftStorage:
    """Durable Raft storage over the raft environment (single writer)."""

    def __init__(self, env: LmdbEnv) -> None:
        self._env = env
        self._log = env.db(schema.DB_RAFT_LOG)
        self._meta = env.db(schema.DB_RAFT_META)
        with env.begin() as txn:
            raw = txn.get(schema.RAFT_META_HARD_STATE, db=self._meta)
            self._hs = HardState(*_HS.unpack(raw)) if raw else HardState()
            raw = txn.get(schema.RAFT_META_SNAPSHOT, db=self._meta)
            self._snap_meta = decode_snapshot_meta(raw) if raw else SnapshotMetadata()
            if self._hs.commit < self._snap_meta.index:
                # The driver writes a commit-only hard state lazily (raft_node.py), so a
                # crash can leave it behind a snapshot taken of applied, hence committed,
                # entries: the snapshot proves the commit.
                self._hs = HardState(self._hs.term, self._hs.vote, self._snap_meta.index)
            raw = txn.get(schema.RAFT_META_LOG_START, db=self._meta)
            start_index, start_term = _START.unpack(raw) if raw else (0, 0)
            cur = txn.cursor(self._log)
            if cur.last():
                last_index = _IDX.unpack(cur.key())[0]
                last_term = _ENTRY_HDR.unpack_from(cur.value())[0]
                assert last_index > start_index, "log entries at or below the log start"
            else:
                last_index, last_term = start_index, start_term
        self._bounds = LogBounds(start_index, start_term, last_index, last_term)
        self._recent = RecentEntries(last_index + 1)

    # --- LogStorage (read side) ---------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hs, self._snap_meta.conf_state

    def hard_state(self) -> HardState:
        return self._hs

    def first_index(self) -> int:
        return self._bounds.start_index + 1

    def last_index(self) -> int:
        return self._bounds.last_index

    def term(self, index: int) -> int:
        b = self._bounds
        if index < b.start_index:
            raise Compacted(f"index {index} is compacted (first is {b.start_index + 1})")
        if index > b.last_index:
            raise Unavailable(f"index {index} beyond last index {b.last_index}")
        if index == b.start_index:
            return b.start_term
        if index == b.last_index:
            return b.last_term
        recent = self._recent
        if recent.covers(index, index + 1):
            return recent.entries[index - recent.first].term
        with self._env.begin() as txn:
            raw = txn.get(_IDX.pack(index), db=self._log)
        assert raw is not None, f"hole in the raft log at {index}"
        return int(_ENTRY_HDR.unpack_from(raw)[0])

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        b = self._bounds
        if lo <= b.start_index:
            raise Compacted(f"index {lo} is compacted (first is {b.start_index + 1})")
        if hi > b.last_index + 1:
            raise Unavailable(f"entries [{lo},{hi}) beyond last index {b.last_index}")
        assert lo <= hi, (lo, hi)
        out: list[Entry] = []
        if lo == hi:
            return out
        recent = self._recent
        if recent.covers(lo, hi):
            return limit_size(list(recent.entries[lo - recent.first: hi - recent.first]),
                              max_size)
        total = 0
        with self._env.begin() as txn:
            cur = txn.cursor(self._log)
            ok = cur.set_key(_IDX.pack(lo))
            assert ok, f"hole in the raft log at {lo}"
            expect = lo
            for k, v in cur:  # bounded by hi - lo
                index = _IDX.unpack(k)[0]
                if index >= hi:
                    break
                assert index == expect, f"hole in the raft log at {expect}"
                size = len(v) - _ENTRY_HDR.size + _ENTRY_OVERHEAD
                if out and max_size is not None and total + size > max_size:
                    break
                total += size
                out.append(decode_entry(index, v))
                expect += 1
        return out

    def snapshot_metadata(self) -> SnapshotMetadata:
        """The stored snapshot's index, term and configuration, without reading its data."""
        return self._snap_meta

    def snapshot(self) -> Snapshot:
        with self._env.begin() as txn:
            data = txn.get(schema.RAFT_META_SNAPSHOT_DATA, db=self._meta) or b""
        return Snapshot(data=bytes(data), metadata=self._snap_meta)

    # --- writer side ------------------------------------------------------------
    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
        sync: bool = True,
    ) -> None:
        """Persist one Ready's snapshot, entries and hard state in one LMDB txn.

        Entries replace any conflicting suffix of the log.  With ``sync`` the data is
        on stable storage when this returns (the Raft driver passes ``must_sync``).
        """
        self._env.ensure_headroom(2 * sum(len(e.data) + 64 for e in entries))
        b = self._bounds
        snap_meta = self._snap_meta
        with self._env.begin(write=True) as txn:
            if snapshot is not None and not snapshot.is_empty():
                m = snapshot.metadata
                if m.index < snap_meta.index:
                    raise SnapshotOutOfDate(f"snapshot {m.index} older than {snap_meta.index}")
                self._delete_range(txn, b.start_index + 1, b.last_index)
                txn.put(schema.RAFT_META_SNAPSHOT, encode_snapshot_meta(m), db=self._meta)
                txn.put(schema.RAFT_META_SNAPSHOT_DATA, snapshot.data, db=self._meta)
                txn.put(schema.RAFT_META_LOG_START, _START.pack(m.index, m.term), db=self._meta)
                snap_meta = m
                b = LogBounds(m.index, m.term, m.index, m.term)
            ents = [e for e in entries if e.index > b.start_index]
            if ents:
                first = ents[0].index
                assert first <= b.last_index + 1, (
                    f"gap: log ends at {b.last_index}, appending from {first}")
                assert all(x.index + 1 == y.index for x, y in zip(ents, ents[1:], strict=False))
                self._delete_range(txn, first, b.last_index)  # conflicting suffix
                put = txn.put
                for e in ents:
                    put(_IDX.pack(e.index), encode_entry(e), db=self._log)
                b = LogBounds(b.start_index, b.start_term, ents[-1].index, ents[-1].term)
            if hard_state is not None:
                txn.put(schema.RAFT_META_HARD_STATE,
                        _HS.pack(hard_state.term, hard_state.vote, hard_state.commit),
                        db=self._meta)
        if sync:
            self._env.sync()
        # update caches only after the commit succeeded
        if snap_meta is not self._snap_meta:
            self._recent = RecentEntries(b.last_index + 1)
        if ents:
            self._recent = self._recent.after_append(ents)
        self._bounds = b
        self._snap_meta = snap_meta
        if hard_state is not None:
            self._hs = hard_state

    def _delete_range(self, txn: lmdb.Transaction, lo: int, hi: int) -> None:
        """Delete stored entries lo..hi inclusive (bounded by the log length)."""
        if lo > hi:
            return
        cur = txn.cursor(self._log)
        if not cur.set_range(_IDX.pack(lo)):
            return
        for _ in range(hi - lo + 1):
            if _IDX.unpack(cur.key())[0] > hi:
                break
            if not cur.delete():  # delete moves the cursor to the next entry
                break
            if not cur.key():
                break

    def append(self, entries: Sequence[Entry], sync: bool = True) -> None:
        self.save(None, entries, None, sync)

    def set_hard_state(self, hs: HardState, sync: bool = True) -> None:
        self.save(hs, (), None, sync)

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.save(None, (), snap, sync=True)

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the applied state at ``index`` (log is kept; see compact)."""
        if index <= self._snap_meta.index:
            raise SnapshotOutOfDate(f"snapshot at {index} is not newer than the stored one")
        if index > self.last_index():
            raise Unavailable(f"snapshot index {index} beyond last index {self.last_index()}")
        cs = conf_state if conf_state is not None else self._snap_meta.conf_state
        meta = SnapshotMetadata(conf_state=cs, index=index, term=self.term(index))
        with self._env.begin(write=True) as txn:
            txn.put(schema.RAFT_META_SNAPSHOT, encode_snapshot_meta(meta), db=self._meta)
            txn.put(schema.RAFT_META_SNAPSHOT_DATA, data, db=self._meta)
        self._env.sync()
        self._snap_meta = meta
        return Snapshot(data=data, metadata=meta)

    def compact(self, index: int) -> None:
        """Drop entries up to and including ``index``; its term is kept as the log start."""
        b = self._bounds
        if index <= b.start_index:
            raise Compacted(f"index {index} already compacted")
        if index > b.last_index:
            raise Unavailable(f"compact {index} beyond last index {b.last_index}")
        term = self.term(index)
        with self._env.begin(write=True) as txn:
            self._delete_range(txn, b.start_index + 1, index)
            txn.put(schema.RAFT_META_LOG_START, _START.pack(index, term), db=self._meta)
        # no sync: losing a compaction on power loss only keeps more log than needed
        self._bounds = LogBounds(index, term, b.last_index, b.last_term)

    def bootstrap(self, voters: Sequence[int], learners: Sequence[int] = ()) -> None:
        """A founding member of a new cluster, laid out as etcd (and MemoryStorage) do.

        The log starts with one committed CONF_CHANGE entry per member at term 1 (voters
        added, then learners) and HardState(term=1, commit=n): a member that joins later
        rebuilds the configuration by replaying them. The same ConfState is the snapshot at
        index 0 so the founders know their peers before applying anything.
        """
        assert self.last_index() == 0 and self._snap_meta.index == 0, "not a fresh log"
        cs = ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
        meta = SnapshotMetadata(conf_state=cs, index=0, term=0)
        with self._env.begin(write=True) as txn:
            txn.put(schema.RAFT_META_SNAPSHOT, encode_snapshot_meta(meta), db=self._meta)
        self._snap_meta = meta
        changes = [ConfChange(ConfChangeType.ADD_NODE, v) for v in cs.voters] + [
            ConfChange(ConfChangeType.ADD_LEARNER_NODE, v) for v in cs.learners
        ]
        entries = [
            Entry(term=1, index=i + 1, type=EntryType.CONF_CHANGE, data=cc.encode())
            for i, cc in enumerate(changes)
        ]
        self.save(HardState(term=1, vote=0, commit=len(entries)), entries, sync=True)

    # --- identity ------------------------------------------------------------------
    def _get_id(self, key: bytes) -> int:
        with self._env.begin() as txn:
            raw = txn.get(key, db=self._meta)
        return 0 if raw is None else int(_IDX.unpack(raw)[0])

    def _set_id(self, key: bytes, value: int) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(key, _IDX.pack(value), db=self._meta)
        self._env.sync()

    def member_id(self) -> int:
        return self._get_id(schema.RAFT_META_MEMBER_ID)

    def set_member_id(self, member_id: int) -> None:
        self._set_id(schema.RAFT_META_MEMBER_ID, member_id)

    def cluster_id(self) -> int:
        return self._get_id(schema.RAFT_META_CLUSTER_ID)

    def set_cluster_id(self, cluster_id: int) -> None:
        self._set_id(schema.RAFT_META_CLUSTER_ID, cluster_id)

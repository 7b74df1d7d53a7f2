"""SimDisk: one node's disk, with the difference between written and synced.

The application writes the Raft hard state, log entries and snapshots through a SimDisk
after each Ready.  Writes go to a pending list first; `sync()` makes them durable.  A
`crash()` models power loss: the pending writes are lost, except that a seeded prefix of
them may already have reached the platter (writes reach the disk in order, as a WAL's do,
so a prefix is what can survive).  The restarted node rebuilds its MemoryStorage from the
durable image alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import IntEnum

from etcdpy.raft import Entry, HardState, MemoryStorage, Snapshot


class OpKind(IntEnum):
    READY = 0  # what one Ready asks to persist: snapshot to install, entries, hard state
    SAVE_SNAPSHOT = 1  # our own snapshot: entries after it are kept


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One record, written atomically (a WAL batch with a checksum: a torn record is
    discarded whole on recovery).  A snapshot and the hard state that commits it must be
    one record, or a restart could see a snapshot beyond its commit index."""

    kind: OpKind
    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None


@dataclass(slots=True)
class DiskImage:
    """What is on the platter.

    Invariant: entries are contiguous and start right after the snapshot
    (entries[0].index == snapshot.metadata.index + 1 when there are any)."""

    hard_state: HardState = HardState()
    snapshot: Snapshot = field(default_factory=Snapshot)
    entries: list[Entry] = field(default_factory=list)

    def apply(self, op: WriteOp) -> None:
        if op.kind is OpKind.READY:
            if op.snapshot is not None:  # received from the leader: replaces the whole log
                self.snapshot = op.snapshot
                self.entries = []
            self._append(op.entries)
            if op.hard_state is not None:
                self.hard_state = op.hard_state
        else:
            assert op.snapshot is not None
            snap_index = op.snapshot.metadata.index
            self.snapshot = op.snapshot
            self.entries = [e for e in self.entries if e.index > snap_index]
        self._check()

    def _append(self, ents: tuple[Entry, ...]) -> None:
        if not ents:
            return
        base = self.snapshot.metadata.index
        kept = [e for e in ents if e.index > base]
        if not kept:
            return
        start = kept[0].index - base - 1  # position of kept[0] in self.entries
        assert 0 <= start <= len(self.entries), ("gap in the log", start, len(self.entries))
        self.entries = self.entries[:start] + kept

    def _check(self) -> None:
        base = self.snapshot.metadata.index
        for i, e in enumerate(self.entries):
            assert e.index == base + 1 + i, ("log not contiguous", base, i, e.index)

    def last_index(self) -> int:
        return self.snapshot.metadata.index + len(self.entries)

    def copy(self) -> DiskImage:
        return DiskImage(self.hard_state, self.snapshot, list(self.entries))


class SimDisk:
    """Invariant: durable reflects exactly the ops synced so far, in order; pending holds
    the ops written since, in order.  The bound on pending is checked, not assumed."""

    MAX_PENDING = 100_000

    def __init__(self, initial: DiskImage | None = None) -> None:
        self.durable = initial if initial is not None else DiskImage()
        self.pending: list[WriteOp] = []
        self.syncs = 0

    def write(self, op: WriteOp) -> None:
        assert len(self.pending) < self.MAX_PENDING, "unsynced writes never flushed"
        self.pending.append(op)

    def write_ready(
        self, snapshot: Snapshot | None, entries: tuple[Entry, ...], hard_state: HardState | None
    ) -> None:
        if snapshot is not None or entries or hard_state is not None:
            self.write(WriteOp(OpKind.READY, hard_state, entries, snapshot))

    def save_snapshot(self, snap: Snapshot) -> None:
        self.write(WriteOp(OpKind.SAVE_SNAPSHOT, snapshot=snap))
        self.sync()  # a snapshot file is fsynced before the log is cut

    def sync(self) -> None:
        for op in self.pending:
            self.durable.apply(op)
        self.pending.clear()
        self.syncs += 1

    def crash(self, rng: random.Random) -> int:
        """Power loss: a seeded prefix of the pending records survives; returns its length."""
        keep = rng.randint(0, len(self.pending)) if self.pending else 0
        for op in self.pending[:keep]:
            self.durable.apply(op)
        self.pending.clear()
        return keep

    def current(self) -> DiskImage:
        """What a reader would see now (durable plus pending), without changing anything."""
        img = self.durable.copy()
        for op in self.pending:
            img.apply(op)
        return img

    def load_storage(self) -> MemoryStorage:
        """A MemoryStorage rebuilt from the durable image only, as after a restart."""
        assert not self.pending, "load_storage after crash() or sync() only"
        img = self.durable
        st = MemoryStorage()
        st.apply_snapshot(img.snapshot)
        st.append(img.entries)
        st.set_hard_state(img.hard_state)
        return st

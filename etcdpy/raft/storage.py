"""The read side of the Raft log storage, and an in-memory implementation.

Raft only ever reads storage; the application writes it after each Ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .errors import Compacted, SnapshotOutOfDate, Unavailable
from .types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMetadata,
)


class LogStorage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in [lo, hi); at least one entry if any, then up to max_size bytes."""
        ...

    def term(self, index: int) -> int:
        """Term of the entry at index; valid for first_index()-1 .. last_index()."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


def limit_size(entries: list[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix within max_size bytes, but never fewer than one entry."""
    if max_size is None or not entries:
        return entries
    total = entries[0].size()
    n = 1
    while n < len(entries):
        total += entries[n].size()
        if total > max_size:
            break
        n += 1
    return entries[:n]


class MemoryStorage:
    """LogStorage kept in lists; for tests and the simulator.

    Invariant: self._ents[0] is a dummy entry whose index/term are those of the
    last snapshot (index 0 for a fresh log), so first_index() = _ents[0].index + 1.
    """

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    @classmethod
    def bootstrap(cls, voters: Sequence[int], learners: Sequence[int] = ()) -> MemoryStorage:
        """Storage for a founding member of a new cluster, laid out as etcd does.

        The log starts with one committed CONF_CHANGE entry per member (term 1: ADD_NODE
        for voters, then ADD_LEARNER_NODE for learners) and HardState(term=1, commit=n).
        A member that joins later starts from an empty MemoryStorage() and rebuilds the
        configuration by replaying these entries, so they must be in the log: a
        configuration kept only outside the log would be missed, and the newcomer would
        believe it is alone.  The same ConfState is also stored as the snapshot at index
        0 so that the founding members know their peers before applying anything; the
        application applies the bootstrap entries like any other (apply_conf_change is
        idempotent for them).  The node cannot campaign until it has applied them.
        """
        s = cls()
        cs = ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
        s._snapshot = Snapshot(metadata=SnapshotMetadata(conf_state=cs, index=0, term=0))
        changes = [ConfChange(ConfChangeType.ADD_NODE, v) for v in cs.voters] + [
            ConfChange(ConfChangeType.ADD_LEARNER_NODE, v) for v in cs.learners
        ]
        s.append(
            [
                Entry(term=1, index=i + 1, type=EntryType.CONF_CHANGE, data=cc.encode())
                for i, cc in enumerate(changes)
            ]
        )
        s._hard_state = HardState(term=1, vote=0, commit=len(changes))
        return s

    # --- LogStorage -------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise Compacted(f"index {lo} is compacted (first is {offset + 1})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries [{lo},{hi}) beyond last index {self.last_index()}")
        assert lo <= hi, (lo, hi)
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise Compacted(f"index {index} is compacted")
        if index - offset >= len(self._ents):
            raise Unavailable(f"index {index} beyond last index {self.last_index()}")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # --- writers used by the application ----------------------------------

    def hard_state(self) -> HardState:
        return self._hard_state

    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        if snap.metadata.index < self._snapshot.metadata.index:
            raise SnapshotOutOfDate(
                f"snapshot {snap.metadata.index} older than {self._snapshot.metadata.index}"
            )
        self._snapshot = snap
        self._ents = [Entry(term=snap.metadata.term, index=snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDate(f"snapshot at {index} is not newer than the stored one")
        if index > self.last_index():
            raise Unavailable(f"snapshot index {index} beyond last index {self.last_index()}")
        cs = conf_state if conf_state is not None else self._snapshot.metadata.conf_state
        meta = SnapshotMetadata(conf_state=cs, index=index, term=self.term(index))
        self._snapshot = Snapshot(data=data, metadata=meta)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to and including index (it becomes the dummy entry)."""
        offset = self._ents[0].index
        if index <= offset:
            raise Compacted(f"index {index} already compacted")
        if index > self.last_index():
            raise Unavailable(f"compact {index} beyond last index {self.last_index()}")
        i = index - offset
        self._ents = [Entry(term=self._ents[i].term, index=index), *self._ents[i + 1 :]]

    def append(self, entries: Sequence[Entry]) -> None:
        """Append, replacing any suffix of the log from entries[0].index on."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return  # everything given is already compacted
        ents = list(entries)
        if first > ents[0].index:
            ents = ents[first - ents[0].index :]
        offset = ents[0].index - self._ents[0].index
        assert offset <= len(self._ents), (
            f"missing log entry: last {self.last_index()}, got {ents[0].index}"
        )
        # In place: copying the whole log on every append would make appends O(n).
        del self._ents[offset:]
        self._ents.extend(ents)

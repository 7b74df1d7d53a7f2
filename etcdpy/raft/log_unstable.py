"""Unstable: the tail of the log (and maybe a snapshot) not yet handed to storage as durable.

Entries move from "unstable" to "in progress" when a Ready hands them to the
application, and leave when advance() reports them stable.
"""

from __future__ import annotations

from .types import Entry, Snapshot


class Unstable:
    """Invariants (checked by _check):
    * entries[i].index == offset + i
    * offset <= offset_in_progress <= offset + len(entries)
    * a snapshot, if any, ends right before offset: snapshot.index + 1 == offset
    * snapshot_in_progress implies a snapshot is present
    """

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset
        self.offset_in_progress = offset
        self.snapshot_in_progress = False

    def _check(self) -> None:
        assert self.offset <= self.offset_in_progress <= self.offset + len(self.entries)
        assert not self.entries or self.entries[0].index == self.offset
        assert self.snapshot is None or self.snapshot.metadata.index + 1 == self.offset
        assert self.snapshot is not None or not self.snapshot_in_progress

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def next_entries(self) -> list[Entry]:
        """Entries not yet handed out for persisting."""
        return self.entries[self.offset_in_progress - self.offset :]

    def next_snapshot(self) -> Snapshot | None:
        if self.snapshot is None or self.snapshot_in_progress:
            return None
        return self.snapshot

    def accept_in_progress(self) -> None:
        """The next entries and snapshot were handed to the application."""
        if self.entries:
            self.offset_in_progress = self.entries[-1].index + 1
        if self.snapshot is not None:
            self.snapshot_in_progress = True
        self._check()

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to (index, term) are durable; drop them unless they were replaced since."""
        t = self.maybe_term(index)
        if t is None or t != term or index < self.offset:
            # Replaced by a newer leader's entries, or already stable: nothing to drop.
            return
        n = index + 1 - self.offset
        self.entries = self.entries[n:]
        self.offset = index + 1
        self.offset_in_progress = max(self.offset_in_progress, self.offset)
        self._check()

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False
        self._check()

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.metadata.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snap
        self.snapshot_in_progress = False
        self._check()

    def truncate_and_append(self, ents: list[Entry]) -> None:
        """Append ents, first dropping any unstable entries at or after ents[0].index."""
        if not ents:
            return
        from_index = ents[0].index
        if from_index == self.offset + len(self.entries):
            self.entries = self.entries + ents
        elif from_index <= self.offset:
            # Replaces everything unstable; storage's suffix is overwritten when persisted.
            self.entries = list(ents)
            self.offset = from_index
            self.offset_in_progress = from_index
        else:
            self.entries = self.entries[: from_index - self.offset] + ents
            self.offset_in_progress = min(self.offset_in_progress, from_index)
        self._check()

    def slice(self, lo: int, hi: int) -> list[Entry]:
        assert self.offset <= lo <= hi <= self.offset + len(self.entries), (lo, hi, self.offset)
        return self.entries[lo - self.offset : hi - self.offset]

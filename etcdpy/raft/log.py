"""RaftLog: the log as Raft sees it, stable storage plus the unstable tail.

Cursor invariants (asserted in _check):
    first_index() - 1 <= applied <= applying <= committed <= last_index()
`applying` is the highest index handed to the application in a Ready; `applied`
the highest it has reported applied (advance()).
"""

from __future__ import annotations

from .errors import Compacted, Unavailable
from .log_unstable import Unstable
from .storage import LogStorage, limit_size
from .types import Entry, Snapshot


class RaftLog:
    def __init__(self, storage: LogStorage, max_applying_size: int = 1 << 64) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Everything up to the snapshot is committed and applied by definition.
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_applying_size = max_applying_size

    def _check(self) -> None:
        assert self.applied <= self.applying <= self.committed, (
            self.applied,
            self.applying,
            self.committed,
        )
        assert self.committed <= self.last_index(), (self.committed, self.last_index())

    def __repr__(self) -> str:
        return (
            f"committed={self.committed}, applying={self.applying}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, "
            f"unstable.offset_in_progress={self.unstable.offset_in_progress}, "
            f"len(unstable.entries)={len(self.unstable.entries)}"
        )

    # --- indexes and terms ------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry i; raises Compacted/Unavailable outside [first_index-1, last_index]."""
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        if i > self.last_index():
            raise Unavailable(f"index {i} beyond last index {self.last_index()}")
        return self.storage.term(i)

    def zero_term_on_out_of_range(self, i: int) -> int:
        try:
            return self.term(i)
        except (Compacted, Unavailable):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, term: int) -> bool:
        try:
            return self.term(i) == term
        except (Compacted, Unavailable):
            return False

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Whether a log ending at (lasti, term) is at least as up to date as ours (§5.4.1)."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and lasti >= self.last_index())

    # --- appending --------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: tuple[Entry, ...]
    ) -> tuple[int, bool]:
        """Append ents after (index, log_term) if our log matches there (AppendEntries)."""
        if not self.match_term(index, log_term):
            return 0, False
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci != 0:
            assert ci > self.committed, f"entry {ci} conflicts with committed {self.committed}"
            self.append(list(ents[ci - index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new, True

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        assert after >= self.committed, (
            f"after {after} is out of range [committed {self.committed}]"
        )
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry that is new or differs from ours in term; 0 if none."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, t) with i <= index and t <= term in our log (fast backtracking).

        A rejection hint built from it lets the leader skip every entry of a term the
        follower does not share, instead of probing one index at a time.
        """
        while index > 0:
            try:
                t = self.term(index)
            except (Compacted, Unavailable):
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # --- commit and apply -------------------------------------------------

    def commit_to(self, to_commit: int) -> None:
        if to_commit > self.committed:
            assert to_commit <= self.last_index(), (
                f"commit {to_commit} out of range [last {self.last_index()}]"
            )
            self.committed = to_commit
        self._check()

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit max_index only if it is of `term` (Figure 8: count replicas of this term)."""
        if max_index > self.committed and self.zero_term_on_out_of_range(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def has_next_or_in_progress_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def next_committed_ents(self, allow_unstable: bool = True) -> list[Entry]:
        if self.has_next_or_in_progress_snapshot():
            # Entries after a pending snapshot must wait until it is installed.
            return []
        lo = self.applying + 1
        hi = self.committed + 1
        if not allow_unstable:
            hi = min(hi, self.unstable.offset)
        if lo >= hi:
            return []
        return self.slice(lo, hi, self.max_applying_size)

    def has_next_committed_ents(self, allow_unstable: bool = True) -> bool:
        if self.has_next_or_in_progress_snapshot():
            return False
        hi = self.committed if allow_unstable else min(self.committed, self.unstable.offset - 1)
        return hi > self.applying

    def accept_applying(self, i: int) -> None:
        assert self.applying <= i <= self.committed, (self.applying, i, self.committed)
        self.applying = i
        self._check()

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        assert self.applied <= i <= self.committed, (self.applied, i, self.committed)
        self.applied = i
        self.applying = max(self.applying, i)
        self._check()

    # --- persistence hand-off ---------------------------------------------

    def next_unstable_ents(self) -> list[Entry]:
        return self.unstable.next_entries()

    def next_unstable_snapshot(self) -> Snapshot | None:
        return self.unstable.next_snapshot()

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def restore(self, s: Snapshot) -> None:
        """Reset the log to a snapshot: everything before it is gone, it is committed."""
        self.committed = s.metadata.index
        self.unstable.restore(s)
        self._check()

    # --- reading ------------------------------------------------------------

    def entries(self, i: int, max_size: int | None = None) -> list[Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        """Every entry still held (for tests and debugging)."""
        return self.entries(self.first_index())

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries [lo, hi) from storage then unstable, limited to max_size (at least one)."""
        self._must_check_out_of_bounds(lo, hi)
        if lo == hi:
            return []
        ents: list[Entry] = []
        if lo < self.unstable.offset:
            stored = self.storage.entries(lo, min(hi, self.unstable.offset), max_size)
            # Fewer than asked: the size limit cut it, so the unstable part is not needed.
            if len(stored) < min(hi, self.unstable.offset) - lo:
                return stored
            ents = stored
        if hi > self.unstable.offset:
            ents = ents + self.unstable.slice(max(lo, self.unstable.offset), hi)
        return limit_size(ents, max_size)

    def _must_check_out_of_bounds(self, lo: int, hi: int) -> None:
        assert lo <= hi, f"invalid slice {lo} > {hi}"
        fi = self.first_index()
        if lo < fi:
            raise Compacted(f"index {lo} is compacted (first {fi})")
        length = self.last_index() + 1 - fi
        if hi > fi + length:
            raise Unavailable(f"slice[{lo},{hi}) out of bound [{fi},{self.last_index()}]")

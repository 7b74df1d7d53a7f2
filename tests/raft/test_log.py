"""RaftLog: matching, conflicts, fast-backtracking hints, commit rules and cursors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdpy.raft import Compacted, ConfState, Entry, MemoryStorage, Snapshot, SnapshotMetadata
from etcdpy.raft.log import RaftLog


def log_with(terms: list[int], snap_index: int = 0) -> RaftLog:
    """A log whose stable entries snap_index+1.. have the given terms."""
    s = MemoryStorage()
    if snap_index:
        s.apply_snapshot(Snapshot(metadata=SnapshotMetadata(ConfState(voters=(1,)), snap_index, 1)))
    s.append([Entry(t, snap_index + 1 + i) for i, t in enumerate(terms)])
    return RaftLog(s)


def test_maybe_append_matches_appends_and_commits() -> None:
    rl = log_with([1, 2, 3])
    # Mismatch at (3, term 2): refused.
    assert rl.maybe_append(3, 2, 3, (Entry(4, 4),)) == (0, False)
    # Match: append and commit up to min(leader commit, last new entry).
    assert rl.maybe_append(3, 3, 10, (Entry(4, 4),)) == (4, True)
    assert rl.last_index() == 4 and rl.committed == 4
    # A conflict above the commit index truncates and replaces.
    rl2 = log_with([1, 2, 3])
    assert rl2.maybe_append(1, 1, 1, (Entry(2, 2), Entry(4, 3))) == (3, True)
    assert rl2.term(3) == 4


def test_conflict_with_a_committed_entry_is_a_bug() -> None:
    rl = log_with([1, 2, 3])
    rl.commit_to(3)
    with pytest.raises(AssertionError):
        rl.maybe_append(1, 1, 3, (Entry(5, 2),))


def test_find_conflict() -> None:
    rl = log_with([1, 2, 3])
    assert rl.find_conflict([Entry(1, 1), Entry(2, 2)]) == 0
    assert rl.find_conflict([Entry(2, 2), Entry(3, 3), Entry(3, 4)]) == 4
    assert rl.find_conflict([Entry(1, 1), Entry(4, 2)]) == 2


def test_find_conflict_by_term_gives_the_backtracking_hint() -> None:
    rl = log_with([1, 1, 2, 2, 2, 5, 5])  # indexes 1..7
    assert rl.find_conflict_by_term(7, 6) == (7, 5)
    assert rl.find_conflict_by_term(7, 4) == (5, 2)  # skip the whole term-5 run
    assert rl.find_conflict_by_term(5, 1) == (2, 1)
    assert rl.find_conflict_by_term(7, 0) == (0, 0)
    compacted = log_with([3, 3, 4], snap_index=5)
    assert compacted.find_conflict_by_term(8, 2) == (5, 1)  # the snapshot's own term
    assert compacted.find_conflict_by_term(8, 0)[1] == 0


def test_maybe_commit_only_counts_the_current_term() -> None:
    rl = log_with([1, 2, 3])
    assert not rl.maybe_commit(2, 3)  # entry 2 is of term 2: Figure 8
    assert rl.committed == 0
    assert rl.maybe_commit(3, 3)
    assert rl.committed == 3
    assert not rl.maybe_commit(2, 2)  # never moves back


def test_is_up_to_date() -> None:
    rl = log_with([1, 2, 3])
    assert rl.is_up_to_date(3, 3)
    assert rl.is_up_to_date(1, 4)  # higher last term wins
    assert not rl.is_up_to_date(2, 3)
    assert not rl.is_up_to_date(10, 2)


def test_cursors_and_committed_entries_with_size_limit() -> None:
    s = MemoryStorage()
    s.append([Entry(1, i, data=b"x" * 10) for i in range(1, 6)])
    rl = RaftLog(s, max_applying_size=2 * Entry(1, 1, data=b"x" * 10).size())
    rl.commit_to(5)
    batch = rl.next_committed_ents()
    assert [e.index for e in batch] == [1, 2]
    rl.accept_applying(2)
    assert [e.index for e in rl.next_committed_ents()] == [3, 4]
    rl.applied_to(2)
    assert rl.applied == 2
    with pytest.raises(AssertionError):
        rl.applied_to(6)  # beyond committed


def test_unstable_entries_are_seen_through_the_log() -> None:
    rl = log_with([1, 1])
    rl.append([Entry(2, 3), Entry(2, 4)])
    assert rl.last_index() == 4 and rl.term(4) == 2
    assert [e.index for e in rl.entries(2)] == [2, 3, 4]
    assert [e.index for e in rl.next_unstable_ents()] == [3, 4]
    # Overwrite part of the stable log: the unstable tail now starts at 2.
    rl.append([Entry(3, 2)])
    assert rl.last_index() == 2 and rl.term(2) == 3
    assert [e.index for e in rl.slice(1, 3)] == [1, 2]


def test_restore_from_snapshot() -> None:
    rl = log_with([1, 1, 1])
    snap = Snapshot(metadata=SnapshotMetadata(ConfState(voters=(1,)), 10, 4))
    rl.restore(snap)
    assert rl.committed == 10 and rl.last_index() == 10 and rl.first_index() == 11
    assert rl.term(10) == 4
    assert rl.has_next_or_in_progress_snapshot()
    assert rl.next_committed_ents() == []  # nothing to apply before the snapshot
    with pytest.raises(Compacted):
        rl.slice(3, 5)


@given(
    st.lists(
        st.tuples(st.sampled_from(["append", "persist", "commit"]), st.integers(0, 8)),
        max_size=40,
    )
)
@settings(max_examples=80, deadline=None)
def test_log_matches_a_list_model_through_appends_and_persists(
    ops: list[tuple[str, int]],
) -> None:
    """Whatever mix of overwriting appends and hand-offs to storage, the log reads back
    exactly like a plain list, and the storage ends up holding that same list."""
    s = MemoryStorage()
    rl = RaftLog(s)
    model: list[int] = []  # model[i] = term of entry i + 1
    term = 1
    for op, n in ops:
        if op == "append":
            # Overwrite from some index above the commit index (as a new leader would).
            start = rl.committed + 1 + n % (len(model) - rl.committed + 1)
            term += 1
            count = 1 + n % 3
            rl.append([Entry(term, start + k) for k in range(count)])
            model = model[: start - 1] + [term] * count
        elif op == "persist":
            ents = rl.next_unstable_ents()
            s.append(ents)
            rl.unstable.accept_in_progress()
            if ents:
                rl.stable_to(ents[-1].index, ents[-1].term)
        elif model:
            rl.commit_to(min(len(model), rl.committed + 1 + n % 2))
        assert [e.term for e in rl.all_entries()] == model
        assert rl.last_index() == len(model)
    ents = rl.next_unstable_ents()
    s.append(ents)
    assert [s.term(i) for i in range(1, s.last_index() + 1)] == model

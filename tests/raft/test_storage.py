"""MemoryStorage: the read interface raft relies on, and the app-side writers."""

from __future__ import annotations

import pytest

from etcdpy.raft import (
    Compacted,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDate,
    Unavailable,
)


def storage_with(*terms_from_index3: int) -> MemoryStorage:
    """A storage whose log starts after a snapshot at (3, 3): entries 4.. with given terms."""
    s = MemoryStorage()
    s.apply_snapshot(Snapshot(metadata=SnapshotMetadata(ConfState(voters=(1,)), 3, 3)))
    s.append([Entry(t, 4 + i) for i, t in enumerate(terms_from_index3)])
    return s


def test_bootstrap_writes_the_configuration_as_committed_log_entries() -> None:
    s = MemoryStorage.bootstrap([3, 1, 2], learners=[4])
    hs, cs = s.initial_state()
    assert cs == ConfState(voters=(1, 2, 3), learners=(4,))
    assert hs == HardState(term=1, vote=0, commit=4)
    assert (s.first_index(), s.last_index()) == (1, 4)
    changes = [ConfChange.decode(e.data) for e in s.entries(1, 5)]
    assert [(c.type, c.node_id) for c in changes] == [
        (ConfChangeType.ADD_NODE, 1),
        (ConfChangeType.ADD_NODE, 2),
        (ConfChangeType.ADD_NODE, 3),
        (ConfChangeType.ADD_LEARNER_NODE, 4),
    ]
    assert all(e.term == 1 and e.type == EntryType.CONF_CHANGE for e in s.entries(1, 5))


def test_term_bounds() -> None:
    s = storage_with(4, 5)
    assert s.term(3) == 3  # the snapshot's entry
    assert s.term(5) == 5
    with pytest.raises(Compacted):
        s.term(2)
    with pytest.raises(Unavailable):
        s.term(6)


def test_entries_range_and_size_limit() -> None:
    s = storage_with(4, 5, 5)
    assert [e.index for e in s.entries(4, 7)] == [4, 5, 6]
    one = Entry(4, 4).size()
    assert [e.index for e in s.entries(4, 7, max_size=2 * one)] == [4, 5]
    # Never fewer than one entry, even if it alone exceeds the limit.
    assert [e.index for e in s.entries(4, 7, max_size=0)] == [4]
    with pytest.raises(Compacted):
        s.entries(3, 5)
    with pytest.raises(Unavailable):
        s.entries(4, 8)


def test_append_truncates_a_conflicting_suffix() -> None:
    s = storage_with(4, 4, 4)
    s.append([Entry(5, 5), Entry(5, 6), Entry(5, 7)])
    assert [(e.term, e.index) for e in s.entries(4, 8)] == [(4, 4), (5, 5), (5, 6), (5, 7)]
    # Entries below the first index are ignored, the rest applies.
    s.append([Entry(3, 3), Entry(4, 4), Entry(6, 5)])
    assert s.last_index() == 5 and s.term(5) == 6


def test_compact_and_snapshots() -> None:
    s = storage_with(4, 4, 5)
    snap = s.create_snapshot(5, ConfState(voters=(1, 2)), b"state")
    assert snap.metadata == SnapshotMetadata(ConfState(voters=(1, 2)), 5, 4)
    s.compact(5)
    assert s.first_index() == 6 and s.last_index() == 6
    assert s.term(5) == 4
    with pytest.raises(Compacted):
        s.compact(5)
    with pytest.raises(SnapshotOutOfDate):
        s.create_snapshot(5, None, b"")
    with pytest.raises(SnapshotOutOfDate):
        s.apply_snapshot(Snapshot(metadata=SnapshotMetadata(index=4, term=4)))
    s.apply_snapshot(Snapshot(b"x", SnapshotMetadata(ConfState(voters=(1,)), 10, 7)))
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 10, 7)
    assert s.initial_state()[1] == ConfState(voters=(1,))

"""Unstable: handing out entries for persistence and dropping them once stable."""

from __future__ import annotations

from etcdpy.raft import ConfState, Entry, Snapshot, SnapshotMetadata
from etcdpy.raft.log_unstable import Unstable


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    return [Entry(term=t, index=i) for i, t in pairs]


def test_append_and_accept_in_progress() -> None:
    u = Unstable(5)
    u.truncate_and_append(ents((5, 1), (6, 1)))
    assert u.maybe_last_index() == 6 and u.maybe_term(6) == 1
    assert [e.index for e in u.next_entries()] == [5, 6]
    u.accept_in_progress()
    assert u.next_entries() == []
    u.truncate_and_append(ents((7, 1)))
    assert [e.index for e in u.next_entries()] == [7]


def test_truncate_rewinds_in_progress() -> None:
    u = Unstable(5)
    u.truncate_and_append(ents((5, 1), (6, 1), (7, 1)))
    u.accept_in_progress()
    u.truncate_and_append(ents((6, 2)))  # a new leader overwrote 6..
    assert [(e.index, e.term) for e in u.entries] == [(5, 1), (6, 2)]
    assert [e.index for e in u.next_entries()] == [6]
    u.truncate_and_append(ents((3, 3)))  # before the offset: replaces everything
    assert u.offset == 3 and [e.index for e in u.entries] == [3]


def test_stable_to_checks_the_term() -> None:
    u = Unstable(5)
    u.truncate_and_append(ents((5, 1), (6, 1)))
    u.accept_in_progress()
    u.stable_to(6, 2)  # wrong term: 6 was replaced since, keep it
    assert len(u.entries) == 2
    u.stable_to(5, 1)
    assert u.offset == 6 and [e.index for e in u.entries] == [6]
    u.stable_to(6, 1)
    assert u.entries == [] and u.offset == 7 and u.maybe_last_index() is None


def test_snapshot_restore_and_stable() -> None:
    u = Unstable(5)
    u.truncate_and_append(ents((5, 1)))
    snap = Snapshot(metadata=SnapshotMetadata(ConfState(voters=(1,)), 10, 3))
    u.restore(snap)
    assert u.entries == [] and u.offset == 11
    assert u.maybe_first_index() == 11 and u.maybe_last_index() == 10
    assert u.maybe_term(10) == 3 and u.maybe_term(9) is None
    assert u.next_snapshot() == snap
    u.accept_in_progress()
    assert u.next_snapshot() is None
    u.stable_snap_to(10)
    assert u.snapshot is None and u.maybe_first_index() is None

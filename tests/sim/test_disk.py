"""SimDisk on its own: written vs synced, power loss, recovery into a MemoryStorage."""

from __future__ import annotations

import random

from etcdpy.raft import ConfState, Entry, HardState, Snapshot, SnapshotMetadata

from .disk import DiskImage, SimDisk


def ents(lo: int, hi: int, term: int) -> tuple[Entry, ...]:
    return tuple(Entry(term, i, data=f"e{i}".encode()) for i in range(lo, hi + 1))


def snap(index: int, term: int) -> Snapshot:
    return Snapshot(b"s", SnapshotMetadata(ConfState(voters=(1, 2, 3)), index, term))


def test_sync_makes_writes_durable() -> None:
    d = SimDisk()
    d.write_ready(None, ents(1, 3, 1), HardState(1, 1, 2))
    assert d.durable.last_index() == 0 and d.current().last_index() == 3
    d.sync()
    assert d.durable.last_index() == 3 and d.durable.hard_state == HardState(1, 1, 2)


def test_crash_keeps_only_a_prefix_of_unsynced_records() -> None:
    for seed in range(30):
        d = SimDisk()
        d.write_ready(None, ents(1, 2, 1), HardState(1, 1, 0))
        d.sync()
        d.write_ready(None, (), HardState(1, 1, 1))
        d.write_ready(None, ents(3, 3, 1), None)
        d.write_ready(None, (), HardState(1, 1, 3))
        kept = d.crash(random.Random(seed))
        assert 0 <= kept <= 3
        want = [HardState(1, 1, 0), HardState(1, 1, 1), HardState(1, 1, 1), HardState(1, 1, 3)]
        assert d.durable.hard_state == want[kept]
        assert d.durable.last_index() == (3 if kept >= 2 else 2)
        assert not d.pending


def test_crash_after_sync_loses_nothing() -> None:
    d = SimDisk()
    d.write_ready(None, ents(1, 5, 2), HardState(2, 1, 4))
    d.sync()
    d.crash(random.Random(0))
    assert d.durable.last_index() == 5 and d.durable.hard_state.commit == 4


def test_append_truncates_a_conflicting_suffix() -> None:
    d = SimDisk()
    d.write_ready(None, ents(1, 5, 1), None)
    d.write_ready(None, ents(3, 4, 2), None)
    d.sync()
    assert [(e.index, e.term) for e in d.durable.entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_installed_snapshot_replaces_the_log_and_own_snapshot_keeps_the_tail() -> None:
    d = SimDisk()
    d.write_ready(None, ents(1, 10, 1), HardState(1, 0, 10))
    d.sync()
    d.save_snapshot(snap(6, 1))  # synced by itself
    assert d.durable.snapshot.metadata.index == 6
    assert [e.index for e in d.durable.entries] == [7, 8, 9, 10]
    d.write_ready(snap(20, 3), ents(21, 21, 3), HardState(3, 0, 20))
    d.sync()
    assert d.durable.snapshot.metadata.index == 20
    assert [e.index for e in d.durable.entries] == [21]


def test_load_storage_rebuilds_what_raft_reads() -> None:
    d = SimDisk(DiskImage(snapshot=snap(4, 1)))
    d.write_ready(None, ents(5, 8, 2), HardState(2, 3, 7))
    d.sync()
    st = d.load_storage()
    hs, cs = st.initial_state()
    assert hs == HardState(2, 3, 7) and cs.voters == (1, 2, 3)
    assert st.first_index() == 5 and st.last_index() == 8
    assert st.term(4) == 1 and st.term(8) == 2
    assert [e.data for e in st.entries(5, 9)] == [b"e5", b"e6", b"e7", b"e8"]

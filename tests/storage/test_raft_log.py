"""LmdbRaftStorage: LogStorage semantics, equal to MemoryStorage, durable across reopen."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etcdpy.raft.errors import Compacted, SnapshotOutOfDate, Unavailable
from etcdpy.raft.storage import MemoryStorage
from etcdpy.raft.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata
from etcdpy.storage import raft_log
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.raft_log import LmdbRaftStorage, RecentEntries

from .conftest import SMALL


def _ents(lo: int, hi: int, term: int, size: int = 10) -> list[Entry]:
    return [Entry(term=term, index=i, data=bytes([i % 256]) * size) for i in range(lo, hi)]


def test_fresh_log(envs: MemberEnvs) -> None:
    s = LmdbRaftStorage(envs.raft)
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    assert s.initial_state() == (HardState(), ConfState())
    assert s.entries(1, 1) == []
    with pytest.raises(Unavailable):
        s.term(1)


def test_save_entries_term_and_suffix_overwrite(envs: MemberEnvs) -> None:
    s = LmdbRaftStorage(envs.raft)
    s.save(HardState(1, 1, 0), _ents(1, 11, 1), sync=True)
    assert s.last_index() == 10 and s.term(5) == 1
    assert s.entries(3, 6) == _ents(3, 6, 1)
    # max_size: entries of 10 data bytes count 26 each; at least one is always returned
    assert len(s.entries(1, 11, max_size=60)) == 2
    assert len(s.entries(1, 11, max_size=1)) == 1
    # a new leader overwrites the suffix from 7 on and the log ends at 8
    s.save(HardState(2, 2, 6), _ents(7, 9, 2), sync=False)
    assert s.last_index() == 8 and s.term(8) == 2 and s.term(6) == 1
    with pytest.raises(Unavailable):
        s.entries(1, 10)
    conf = Entry(term=2, index=9, type=EntryType.CONF_CHANGE, data=b"cc")
    s.save(None, [conf])
    assert s.entries(9, 10) == [conf]
    assert s.hard_state() == HardState(2, 2, 6)


def test_compact_keeps_dummy_term_and_reopen(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path, SMALL) as e:
        s = LmdbRaftStorage(e.raft)
        s.save(HardState(3, 1, 9), _ents(1, 6, 1) + _ents(6, 11, 3))
        s.compact(7)
        assert s.first_index() == 8 and s.term(7) == 3
        with pytest.raises(Compacted):
            s.term(6)
        with pytest.raises(Compacted):
            s.entries(7, 9)
        with pytest.raises(Compacted):
            s.compact(7)
        assert e.raft.entries(b"raft_log") == 3
        s.set_member_id(0x1234)
        s.set_cluster_id(0xABCD)
    with MemberEnvs(tmp_path, SMALL) as e:
        s = LmdbRaftStorage(e.raft)
        assert (s.first_index(), s.last_index(), s.term(7), s.term(10)) == (8, 10, 3, 3)
        assert s.hard_state() == HardState(3, 1, 9)
        assert s.entries(8, 11) == _ents(8, 11, 3)
        assert (s.member_id(), s.cluster_id()) == (0x1234, 0xABCD)


def test_a_snapshot_ahead_of_the_written_commit_index_counts_as_committed(tmp_path: Path) -> None:
    """The driver writes a commit-only hard state lazily, so a crash can leave the stored
    commit index behind a snapshot of applied entries; on reopen the snapshot proves the
    commit (the core refuses an applied index beyond the commit index)."""
    with MemberEnvs(tmp_path, SMALL) as e:
        s = LmdbRaftStorage(e.raft)
        s.save(HardState(2, 1, 4), _ents(1, 11, 2))
        s.create_snapshot(8, ConfState(voters=(1,)), b"")
    with MemberEnvs(tmp_path, SMALL) as e:
        s = LmdbRaftStorage(e.raft)
        assert s.hard_state() == HardState(2, 1, 8)
        assert s.initial_state()[0].commit == 8


def test_snapshots(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path, SMALL) as e:
        s = LmdbRaftStorage(e.raft)
        s.bootstrap([3, 1, 2])
        assert s.initial_state()[1] == ConfState(voters=(1, 2, 3))
        s.save(HardState(2, 1, 5), _ents(1, 8, 2))
        cs = ConfState(voters=(1, 2), learners=(3,))
        snap = s.create_snapshot(5, cs, b"state-at-5")
        assert snap.metadata == SnapshotMetadata(cs, 5, 2)
        with pytest.raises(SnapshotOutOfDate):
            s.create_snapshot(4, None, b"")
        assert s.last_index() == 7  # creating a snapshot keeps the log
        # installing a newer snapshot from a leader replaces the whole log
        leader = Snapshot(b"state-at-20", SnapshotMetadata(ConfState(voters=(1, 2, 3)), 20, 4))
        s.save(HardState(4, 0, 20), _ents(21, 23, 4), leader)
        assert (s.first_index(), s.last_index(), s.term(20)) == (21, 22, 4)
        with pytest.raises(SnapshotOutOfDate):
            s.apply_snapshot(snap)
    with MemberEnvs(tmp_path, SMALL) as e:
        s = LmdbRaftStorage(e.raft)
        assert s.snapshot() == leader
        assert s.initial_state() == (HardState(4, 0, 20), ConfState(voters=(1, 2, 3)))
        assert s.entries(21, 23) == _ents(21, 23, 4)


# --- model check: every operation sequence behaves like MemoryStorage ---------------
op = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 12), st.integers(0, 6), st.integers(1, 5)),
    st.tuples(st.just("compact"), st.integers(0, 15), st.just(0), st.just(0)),
    st.tuples(st.just("snapshot"), st.integers(0, 15), st.just(0), st.just(0)),
)


def _outcome(f: object) -> object:
    try:
        return f()  # type: ignore[operator]
    except (Compacted, Unavailable, SnapshotOutOfDate) as err:
        return type(err)


@pytest.fixture(params=["tail-default", "tail-of-4-entries", "tail-of-40-bytes"])
def tail_limits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small limits make the in-memory tail drop entries, so reads cross from it to LMDB."""
    if request.param == "tail-of-4-entries":
        monkeypatch.setattr(raft_log, "TAIL_MAX_ENTRIES", 4)
    elif request.param == "tail-of-40-bytes":
        monkeypatch.setattr(raft_log, "TAIL_MAX_BYTES", 40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=12))
def test_matches_memory_storage(tmp_path_factory: pytest.TempPathFactory, ops: list,
                                tail_limits: None) -> None:
    mem = MemoryStorage()
    with MemberEnvs(tmp_path_factory.mktemp("rl"), SMALL) as e:
        disk = LmdbRaftStorage(e.raft)
        term = 1
        for kind, a, n, dterm in ops:
            if kind == "append":
                lo = min(a, mem.last_index() + 1)
                lo = max(lo, 1)
                term += dterm
                ents = _ents(lo, lo + n, term, 3)
                mem.append(ents)
                disk.append(ents)
            elif kind == "compact":
                assert _outcome(lambda a=a: mem.compact(a)) == _outcome(lambda a=a: disk.compact(a))
            else:
                r1 = _outcome(lambda a=a: mem.create_snapshot(a, None, b"d%d" % a))
                r2 = _outcome(lambda a=a: disk.create_snapshot(a, None, b"d%d" % a))
                assert r1 == r2
            assert (mem.first_index(), mem.last_index()) == (disk.first_index(), disk.last_index())
            lo, hi = mem.first_index() - 1, mem.last_index()
            for i in range(max(0, lo - 1), hi + 2):
                assert _outcome(lambda i=i: mem.term(i)) == _outcome(lambda i=i: disk.term(i))
            assert _outcome(lambda lo=lo, hi=hi: mem.entries(lo + 1, hi + 1)) == _outcome(
                lambda lo=lo, hi=hi: disk.entries(lo + 1, hi + 1))
            assert mem.snapshot() == disk.snapshot()
            # What the recent entries kept in memory answer is what the file holds: a second
            # reader opened now has none in memory and reads LMDB.
            from_file = LmdbRaftStorage(e.raft)
            for start in range(lo + 1, hi + 1):
                for limit in (None, 1, 30, 60):
                    assert disk.entries(start, hi + 1, limit) == from_file.entries(
                        start, hi + 1, limit)
                assert disk.term(start) == from_file.term(start)


def test_recent_entries_keep_the_newest_within_both_limits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raft_log, "TAIL_MAX_ENTRIES", 5)
    monkeypatch.setattr(raft_log, "TAIL_MAX_BYTES", 100)
    tail = RecentEntries(1).after_append(_ents(1, 4, 1))  # 3 entries of 26 bytes
    assert [e.index for e in tail.entries] == [1, 2, 3] and tail.nbytes == 78
    tail = tail.after_append(_ents(4, 6, 1))  # 5 entries, 130 bytes: the oldest go
    assert [e.index for e in tail.entries] == [3, 4, 5] and tail.nbytes == 78
    assert tail.first == 3 and tail.covers(3, 6) and not tail.covers(2, 4)
    tail = tail.after_append(_ents(4, 5, 2))  # a conflicting suffix from 4 is replaced
    assert [(e.index, e.term) for e in tail.entries] == [(3, 1), (4, 2)]
    assert tail.nbytes == 52
    tail = tail.after_append(_ents(9, 10, 2))  # not adjacent: starts over
    assert tail.first == 9 and [e.index for e in tail.entries] == [9]
    big = Entry(term=3, index=10, type=EntryType.NORMAL, data=b"x" * 500)
    tail = tail.after_append([big])  # one entry over the byte limit is still kept
    assert [e.index for e in tail.entries] == [10] and tail.nbytes == 516

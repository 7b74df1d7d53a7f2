"""A state env that lost its newest transactions (as after a power cut) is repaired
exactly by replaying the Raft log from its stored consistent index."""

from __future__ import annotations

from pathlib import Path

from etcdpy.raft.types import Entry, HardState
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc import KVStore
from etcdpy.storage.raft_log import LmdbRaftStorage
from etcdpy.storage.snapshot import install_state_snapshot, write_state_snapshot

from .conftest import SMALL
from .crash_model import apply_store

COMPACT = b"compact"


def _apply_from_log(store: KVStore, raft: LmdbRaftStorage, per_batch: int) -> None:
    """What the server does on start: apply every logged entry above the stored index."""
    nxt = store.consistent_index + 1
    last = raft.last_index()
    while nxt <= last:  # bounded by the log
        ents = raft.entries(nxt, min(last, nxt + per_batch - 1) + 1)
        compacted = False
        with store.write_batch(ents[-1].index, ents[-1].term) as batch:
            for e in ents:
                if e.data == COMPACT:
                    batch.schedule_compaction(batch.current_rev - 50)
                    compacted = True
                else:
                    apply_store(batch, int(e.data))
        if compacted:
            store.run_compaction(max_keys_per_txn=4)
        nxt = ents[-1].index + 1


def _observe(store: KVStore) -> tuple[object, ...]:
    return (store.consistent_index, store.current_rev, store.compact_rev, store.hash_kv(),
            store.range(b"\x00", b"\x00"), store.events(b"\x00", b"\x00", store.compact_rev,
                                                         limit=10_000))


def test_lagging_state_is_repaired_by_replay(tmp_path: Path) -> None:
    old_image = tmp_path / "old-state.mdb"
    with MemberEnvs(tmp_path / "d", SMALL) as e:
        store, raft = KVStore(e.state), LmdbRaftStorage(e.raft)
        for i in range(1, 301):
            data = COMPACT if i == 200 else b"%d" % i
            raft.save(HardState(1, 1, i), [Entry(term=1, index=i, data=data)], sync=True)
            if i == 137:
                _apply_from_log(store, raft, per_batch=7)
                write_state_snapshot(e.state, old_image)  # the state as of index 137
        _apply_from_log(store, raft, per_batch=7)
        want = _observe(store)
    # lose everything the state env committed after index 137
    install_state_snapshot(tmp_path / "d" / "member", old_image)
    with MemberEnvs(tmp_path / "d", SMALL) as e:
        store, raft = KVStore(e.state), LmdbRaftStorage(e.raft)
        assert store.consistent_index == 137
        _apply_from_log(store, raft, per_batch=13)  # different batching, same result
        got = _observe(store)
    assert got == want

"""A state image loads into an open env in place: same contents, old data gone."""

from __future__ import annotations

from pathlib import Path

from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc import KVStore
from etcdpy.storage.snapshot import load_state_image, write_state_snapshot

from .conftest import SMALL


def _fill(store: KVStore, applied: int, prefix: bytes, n: int) -> None:
    with store.write_batch(applied) as batch:
        for i in range(n):
            w = batch.txn()
            w.put(prefix + b"%04d" % i, b"v%d" % i)
            w.end()


def test_image_replaces_the_state_in_one_transaction(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path / "leader", SMALL) as leader:
        store = KVStore(leader.state)
        _fill(store, 10, b"a", 300)
        image = tmp_path / "image.mdb"
        write_state_snapshot(leader.state, image)
        leader_view = store.range(b"\x00", b"\x00")
        leader_rev, leader_index = store.current_rev, store.consistent_index

    with MemberEnvs(tmp_path / "follower", SMALL) as follower:
        store = KVStore(follower.state)
        _fill(store, 3, b"zz-stale", 50)
        load_state_image(follower.state, image)
        store.refresh()
        assert store.current_rev == leader_rev
        assert store.consistent_index == leader_index
        assert store.range(b"zz", b"zz\xff").kvs == ()
        got = store.range(b"\x00", b"\x00")
        assert got.kvs == leader_view.kvs and got.count == 300
        _fill(store, leader_index + 1, b"b", 2)  # keeps working as a store
        assert store.range(b"b", b"c").count == 2

"""A state snapshot taken from a running store installs into another member."""

from __future__ import annotations

from pathlib import Path

from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc import KVStore
from etcdpy.storage.snapshot import (
    install_state_snapshot,
    snapshot_consistent_index,
    write_state_snapshot,
)

from .conftest import SMALL, Applier


def test_snapshot_roundtrip(tmp_path: Path) -> None:
    src, dst, image = tmp_path / "a", tmp_path / "b", tmp_path / "snap" / "state.snap.mdb"
    with MemberEnvs(src, SMALL) as e:
        app = Applier(KVStore(e.state))
        for i in range(100):
            app.put(b"k%03d" % (i % 30), b"%d" % i)
        app.delete(b"k000")
        assert write_state_snapshot(e.state, image) > 0
        app.put(b"after", b"snapshot")  # not in the image
        expect = app.store.range(b"\x00", b"\x00", rev=102)
    assert snapshot_consistent_index(image) == 101
    with MemberEnvs(dst, SMALL) as e:  # a lagging member with its own old state
        Applier(KVStore(e.state)).put(b"stale", b"x")
    install_state_snapshot(dst / "member", image)
    with MemberEnvs(dst, SMALL) as e:
        s = KVStore(e.state)
        assert (s.consistent_index, s.current_rev) == (101, 102)
        r = s.range(b"\x00", b"\x00")
        assert r.kvs == expect.kvs and r.count == 29
        Applier(s).put(b"new", b"write")  # and it keeps working
        assert s.current_rev == 103

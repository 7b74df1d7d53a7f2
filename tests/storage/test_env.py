"""Environment opening: layout, growth of the map, lock release."""

from __future__ import annotations

from pathlib import Path

from etcdpy.storage import schema
from etcdpy.storage.env import EnvOptions, LmdbEnv, MemberEnvs, member_dir_exists
from etcdpy.storage.mvcc import KVStore


def test_layout_under_member_dir(tmp_path: Path) -> None:
    assert not member_dir_exists(tmp_path)
    with MemberEnvs(tmp_path, EnvOptions(256 << 20, 256 << 20)):
        pass
    assert member_dir_exists(tmp_path)
    for sub in (schema.RAFT_ENV_DIR, schema.STATE_ENV_DIR):
        assert (tmp_path / "member" / sub / "data.mdb").exists()


def test_state_map_covers_quota() -> None:
    assert EnvOptions().state_map_bytes() >= 2 * (2 << 30)
    assert EnvOptions(quota_backend_bytes=8 << 30).state_map_bytes() == 16 << 30


def test_map_grows_before_it_fills(tmp_path: Path) -> None:
    env = LmdbEnv(tmp_path / "state", schema.STATE_DBS, 1 << 20, readonly=False)
    try:
        store = KVStore(env)
        value = b"x" * 4000
        # ~8 MiB into a 1 MiB map: each batch grows the map first when needed
        for i in range(40):
            with store.write_batch(i + 1) as b:
                for j in range(50):
                    w = b.txn()
                    w.put(b"k%04d" % (i * 50 + j), value)
                    w.end()
        assert env.map_size() > 1 << 20
        assert store.range(b"k", b"l", count_only=True).count == 2000
    finally:
        env.close()

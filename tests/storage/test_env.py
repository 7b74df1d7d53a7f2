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
        # one batch bigger than the whole map: announced, so the map grows first
        before = env.map_size()
        with store.write_batch(100, reserve_bytes=3 * before) as b:
            w = b.txn()
            w.put(b"huge", b"h" * (2 * before))
            w.end()
        assert env.map_size() > before
    finally:
        env.close()


_LONG_READER = """
import sys
from pathlib import Path
from etcdpy.storage import schema
from etcdpy.storage.env import LmdbEnv
from etcdpy.storage.mvcc import KVStore
env = LmdbEnv(Path(sys.argv[1]), schema.STATE_DBS, 1 << 20, readonly=True)
store = KVStore(env)
for line in sys.stdin:
    r = store.range(b"k", b"l", count_only=True)
    print(r.count, r.rev, flush=True)
"""


def test_long_lived_reader_follows_map_growth(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = LmdbEnv(tmp_path / "state", schema.STATE_DBS, 1 << 20, readonly=False)
    try:
        store = KVStore(env)
        with store.write_batch(1) as b:
            w = b.txn()
            w.put(b"k0", b"v")
            w.end()
        reader = subprocess.Popen(
            [sys.executable, "-c", _LONG_READER, str(tmp_path / "state")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={"PYTHONPATH": str(Path(__file__).parents[2])},
        )
        assert reader.stdin is not None and reader.stdout is not None
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["1", "2"]
        for i in range(20):  # ~4 MiB: the owner grows the map several times
            with store.write_batch(i + 2) as b:
                for j in range(50):
                    w = b.txn()
                    w.put(b"k%d-%d" % (i, j), b"x" * 4000)
                    w.end()
        assert env.map_size() > 1 << 20
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["1001", str(store.current_rev)]
        reader.stdin.close()
        assert reader.wait() == 0
    finally:
        env.close()


def test_sizes_for_status_and_quota(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path, EnvOptions(256 << 20, 256 << 20)) as e:
        store = KVStore(e.state)
        empty_use = e.state.in_use_bytes()
        with store.write_batch(1) as b:
            for i in range(200):
                w = b.txn()
                w.put(b"k%03d" % i, b"x" * 2000)
                w.end()
        used = e.state.in_use_bytes()
        assert used - empty_use >= 200 * 2000
        assert e.state.file_bytes() >= used
        with store.write_batch(2) as b:
            w = b.txn()
            w.delete_range(b"k", b"l")
            w.end()
            b.schedule_compaction(b.current_rev)
        store.run_compaction()
        # the values are gone from the live data; the file keeps its free pages
        assert e.state.in_use_bytes() < used - 150 * 2000

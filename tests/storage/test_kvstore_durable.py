"""Restart keeps everything (nothing rebuilt) and compaction removes data physically."""

from __future__ import annotations

import time
from pathlib import Path

from etcdpy.storage import schema
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc import KVStore

from .conftest import SMALL, Applier


def test_restart_same_revision_same_data(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path, SMALL) as e:
        app = Applier(KVStore(e.state))
        for i in range(50):
            app.put(b"k%02d" % (i % 20), b"v%d" % i)
        app.delete(b"k05")
        app.compact(30)
        before = app.store.range(b"\x00", b"\x00")
        h = app.store.hash_kv()
    with MemberEnvs(tmp_path, SMALL) as e:
        s = KVStore(e.state)
        assert (s.current_rev, s.consistent_index, s.compact_rev) == (52, 52, 30)
        assert s.compaction_pending()  # scheduled but not run: resumed after restart
        assert s.range(b"\x00", b"\x00") == before
        assert s.hash_kv() == h
        s.run_compaction()
        assert not s.compaction_pending()
        assert s.hash_kv() == h  # HashKV is independent of physical progress


def test_reopen_with_100k_keys_reads_nothing(tmp_path: Path) -> None:
    n = 100_000
    with MemberEnvs(tmp_path, SMALL) as e:
        s = KVStore(e.state)
        for batch in range(n // 5000):
            with s.write_batch(batch + 1) as b:
                for i in range(batch * 5000, (batch + 1) * 5000):
                    w = b.txn()
                    w.put(b"key/%08d" % i, b"value")
                    w.end()
        assert s.current_rev == n + 1
    t0 = time.perf_counter()
    with MemberEnvs(tmp_path, SMALL) as e:
        s = KVStore(e.state)
        r = s.range(b"key/00050000", b"key/00050003")
        elapsed = time.perf_counter() - t0
        assert [kv.key for kv in r.kvs] == [b"key/%08d" % i for i in range(50000, 50003)]
        assert s.current_rev == n + 1
        assert s.range(b"key/", b"key0", count_only=True).count == n
    # reported, not asserted (no timed assertions): opening is O(1) in the key count
    print(f"\nreopen + first range with {n} keys: {elapsed * 1000:.1f} ms")


def test_compaction_physically_removes_and_keeps_latest(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path, SMALL) as e:
        s = KVStore(e.state)
        app = Applier(s)
        for rnd in range(10):
            for k in range(30):
                app.put(b"k%02d" % k, b"r%d" % rnd)
        for k in range(10):
            app.delete(b"k%02d" % k)  # ten dead keys
        rev = s.current_rev
        key_entries = e.state.entries(schema.DB_KEY)
        idx_entries = e.state.entries(schema.DB_KINDEX_REVS)
        assert key_entries == idx_entries == 310
        app.compact(rev)
        steps = 0
        while not s.compact_step(max_keys=7):
            steps += 1
        assert steps == 30 // 7  # bounded batches: 7 keys per LMDB transaction
        # 20 live keys keep exactly their latest revision; dead keys vanish entirely
        assert e.state.entries(schema.DB_KEY) == 20
        assert e.state.entries(schema.DB_KINDEX_REVS) == 20
        assert e.state.entries(schema.DB_KINDEX_KEYS) == 20
        r = s.range(b"\x00", b"\x00")
        assert [kv.key for kv in r.kvs] == [b"k%02d" % k for k in range(10, 30)]
        assert all(kv.value == b"r9" and kv.version == 10 for kv in r.kvs)
        assert s.finished_compact_rev == rev
        # a key re-created after its index entry vanished starts a new generation
        app.put(b"k00", b"again")
        kv = s.range(b"k00").kvs[0]
        assert (kv.create_revision, kv.version) == (rev + 1, 1)


def test_compaction_resumes_after_restart(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path, SMALL) as e:
        s = KVStore(e.state)
        app = Applier(s)
        for rnd in range(3):
            for k in range(20):
                app.put(b"k%02d" % k, b"%d" % rnd)
        app.compact(s.current_rev)
        assert not s.compact_step(max_keys=5)
        assert not s.compact_step(max_keys=5)
        partial = e.state.entries(schema.DB_KEY)
        assert 20 < partial < 60
    with MemberEnvs(tmp_path, SMALL) as e:
        s = KVStore(e.state)
        assert s.compaction_pending()
        s.run_compaction(max_keys_per_txn=5)
        assert e.state.entries(schema.DB_KEY) == 20


_READER = """
import sys
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc import KVStore
with MemberEnvs(sys.argv[1], readonly=True) as e:
    s = KVStore(e.state)
    r = s.range(b"a")
    print(s.current_rev, r.kvs[0].value.decode(), r.kvs[0].version)
"""


def test_another_process_reads_while_the_owner_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    def read_in_child() -> str:
        return subprocess.run(
            [sys.executable, "-c", _READER, str(tmp_path)], capture_output=True, text=True,
            check=True, env={"PYTHONPATH": str(Path(__file__).parents[2])},
        ).stdout.strip()

    with MemberEnvs(tmp_path, SMALL) as e:
        app = Applier(KVStore(e.state))
        app.put(b"a", b"1")
        assert read_in_child() == "2 1 1"
        app.put(b"a", b"2")
        assert read_in_child() == "3 2 2"


def test_second_writer_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from etcdpy.storage.env import MemberEnvs\n"
        "from etcdpy.storage.errors import DataDirLockedError\n"
        "try:\n"
        "    MemberEnvs(sys.argv[1])\n"
        "except DataDirLockedError:\n"
        "    print('locked')\n"
    )
    with MemberEnvs(tmp_path, SMALL):
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
            check=True, env={"PYTHONPATH": str(Path(__file__).parents[2])},
        ).stdout.strip()
    assert out == "locked"
    with MemberEnvs(tmp_path, SMALL):  # released on close
        pass

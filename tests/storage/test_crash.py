"""kill -9 at random moments under a write load loses no acknowledged write and
leaves a store that opens, equals the model at its stored applied index, and serves."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc import KVStore
from etcdpy.storage.raft_log import LmdbRaftStorage

from .conftest import SMALL
from .crash_model import Model, apply_model

ROOT = Path(__file__).parents[2]
KILLS = 24


def _run_and_kill(data_dir: Path, rng: random.Random) -> int:
    """Start the writer, SIGKILL it after a random delay; returns the last acked index."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_child", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    acked: list[int] = []
    assert proc.stdout is not None

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the child dies
            acked.append(int(line))

    t = threading.Thread(target=reader)
    t.start()
    # wait until it has acknowledged something (startup cost varies), then a random delay
    for _ in range(2000):
        if acked or proc.poll() is not None:
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.25))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t.join()
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL, err
    return acked[-1] if acked else 0


def test_sigkill_during_writes(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    last_acked = 0
    for round_ in range(KILLS):
        acked = _run_and_kill(tmp_path, rng)
        last_acked = max(last_acked, acked)
        with MemberEnvs(tmp_path, SMALL) as e:
            store = KVStore(e.state)
            raft = LmdbRaftStorage(e.raft)
            ci = store.consistent_index
            # no acknowledged write lost, and the WAL is never behind the state
            assert ci >= last_acked, (round_, ci, last_acked)
            assert raft.last_index() >= ci
            lo = raft.first_index()
            assert [x.data for x in raft.entries(lo, raft.last_index() + 1)] == [
                b"%d" % k for k in range(lo, raft.last_index() + 1)]
            # the state is exactly the model at the stored applied index
            model = Model()
            for k in range(1, ci + 1):
                apply_model(model, k)
            assert store.current_rev == model.rev
            r = store.range(b"\x00", b"\x00")
            got = {kv.key: (kv.value, kv.create_revision, kv.mod_revision, kv.version)
                   for kv in r.kvs}
            assert got == model.kvs
            assert got[b"last"][0] == b"%d" % ci
            # and it serves: history at the compaction point and a hash (the next round writes)
            if store.compact_rev > 0:
                store.range(b"\x00", b"\x00", rev=store.compact_rev)
            store.hash_kv()
            last_acked = ci
    assert last_acked > KILLS  # the writer made progress across restarts
    print(f"\n{KILLS} kills, final applied index {last_acked}")

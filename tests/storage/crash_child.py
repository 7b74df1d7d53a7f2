"""Child process of test_crash.py: persist entries to the raft log (fsynced), apply
them in batches to the state env, print each acknowledged index, until SIGKILLed."""

from __future__ import annotations

import sys

from etcdpy.raft.types import Entry, HardState
from etcdpy.storage.env import EnvOptions, MemberEnvs
from etcdpy.storage.mvcc import KVStore
from etcdpy.storage.raft_log import LmdbRaftStorage
from tests.storage.crash_model import apply_store

COMPACT_EVERY = 25


def main() -> None:
    opts = EnvOptions(quota_backend_bytes=256 << 20, raft_map_bytes=256 << 20)
    envs = MemberEnvs(sys.argv[1], opts)
    store = KVStore(envs.state)
    raft = LmdbRaftStorage(envs.raft)
    store.run_compaction()  # resume an interrupted compaction, as the server will
    i = store.consistent_index
    # bounded by the SIGKILL the parent sends; the cap is a safety net only
    for _ in range(1_000_000):
        lo, hi = i + 1, i + 1 + i % 4  # 1..4 entries per LMDB txn, like the applier
        first_new = max(lo, raft.last_index() + 1)
        if first_new <= hi:  # the WAL first, fsynced, like the Raft driver
            ents = [Entry(term=1, index=k, data=b"%d" % k) for k in range(first_new, hi + 1)]
            raft.save(HardState(1, 1, hi), ents, sync=True)
        compact = any(k % COMPACT_EVERY == 0 for k in range(lo, hi + 1))
        with store.write_batch(hi) as batch:
            for k in range(lo, hi + 1):
                apply_store(batch, k)
            target = batch.current_rev - 10
            if compact and target > batch.meta.compact_rev:
                batch.schedule_compaction(target)
        while not store.compact_step(max_keys=3):  # many small txns to crash inside
            pass
        if raft.last_index() - raft.first_index() > 200:
            raft.compact(hi - 100)
        i = hi
        print(hi, flush=True)


if __name__ == "__main__":
    main()

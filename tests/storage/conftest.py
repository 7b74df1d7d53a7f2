"""Fixtures: real LMDB environments in temporary directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.storage.env import EnvOptions, MemberEnvs
from etcdpy.storage.mvcc import KVStore

# small maps keep the tests light; growth is tested explicitly
SMALL = EnvOptions(quota_backend_bytes=256 << 20, raft_map_bytes=256 << 20)


@pytest.fixture
def envs(tmp_path: Path) -> Iterator[MemberEnvs]:
    e = MemberEnvs(tmp_path, SMALL)
    yield e
    e.close()


@pytest.fixture
def store(envs: MemberEnvs) -> KVStore:
    return KVStore(envs.state)


class Applier:
    """Tiny helper giving every batch the next applied index, like the server would."""

    def __init__(self, store: KVStore) -> None:
        self.store = store
        self.index = store.consistent_index

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        self.index += 1
        with self.store.write_batch(self.index) as b:
            w = b.txn()
            w.put(key, value, lease)
            w.end()
        return self.store.current_rev

    def delete(self, key: bytes, range_end: bytes = b"") -> int:
        self.index += 1
        with self.store.write_batch(self.index) as b:
            w = b.txn()
            w.delete_range(key, range_end)
            w.end()
        return self.store.current_rev

    def compact(self, rev: int) -> None:
        self.index += 1
        with self.store.write_batch(self.index) as b:
            b.schedule_compaction(rev)


@pytest.fixture
def app(store: KVStore) -> Applier:
    return Applier(store)

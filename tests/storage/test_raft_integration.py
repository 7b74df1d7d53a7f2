"""The Raft core driven over LmdbRaftStorage and KVStore: a single-member loop that
persists each Ready, applies committed entries in one batch, survives a restart."""

from __future__ import annotations

from pathlib import Path

from etcdpy.raft import RaftConfig, RawNode
from etcdpy.raft.types import ConfChange, EntryType
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc import KVStore
from etcdpy.storage.raft_log import LmdbRaftStorage

from .conftest import SMALL


def _drive(node: RawNode, log: LmdbRaftStorage, store: KVStore) -> None:
    """Process Readies until there is nothing left (bounded)."""
    for _ in range(100):
        if not node.has_ready():
            return
        rd = node.ready()
        log.save(rd.hard_state, rd.entries, rd.snapshot, sync=rd.must_sync)
        if rd.committed_entries:
            last = rd.committed_entries[-1]
            with store.write_batch(last.index, last.term) as batch:
                for e in rd.committed_entries:
                    if e.type == EntryType.CONF_CHANGE:
                        node.apply_conf_change(ConfChange.decode(e.data))
                    elif e.data:
                        k, v = e.data.split(b"=", 1)
                        w = batch.txn()
                        w.put(k, v)
                        w.end()
        node.advance()
    raise AssertionError("Ready loop did not settle")


def _start(e: MemberEnvs) -> tuple[RawNode, LmdbRaftStorage, KVStore]:
    log, store = LmdbRaftStorage(e.raft), KVStore(e.state)
    if log.last_index() == 0 and not log.initial_state()[1].voters:
        log.bootstrap([1])
    node = RawNode(RaftConfig(id=1, applied=store.consistent_index), log)
    _drive(node, log, store)  # a founding member applies its bootstrap entries first
    node.campaign()
    _drive(node, log, store)
    return node, log, store


def test_single_member_loop_and_restart(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path, SMALL) as e:
        node, log, store = _start(e)
        for i in range(20):
            node.propose(b"k%d=v%d" % (i % 5, i))
            _drive(node, log, store)
        assert store.range(b"k4").kvs[0].value == b"v19"
        first_run = (log.last_index(), store.consistent_index, store.current_rev)
        assert first_run[1] == first_run[0] and first_run[2] == 21
    with MemberEnvs(tmp_path, SMALL) as e:
        node, log, store = _start(e)
        hs = log.hard_state()
        assert hs.term >= 2 and hs.commit == log.last_index()
        assert store.current_rev == 21  # nothing re-applied after restart
        node.propose(b"k0=after")
        _drive(node, log, store)
        assert store.range(b"k0").kvs[0].value == b"after"
        assert store.range(b"k0").kvs[0].version == 5
        assert store.consistent_index == log.last_index()

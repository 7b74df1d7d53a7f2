"""Membership records live in the state env and change atomically with a batch."""

from __future__ import annotations

import json
from pathlib import Path

from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.members import MemberRecord, Members
from etcdpy.storage.mvcc import KVStore

from .conftest import SMALL


def test_put_remove_list_and_reopen(tmp_path: Path) -> None:
    a = MemberRecord(0x8E9E05C52164694D, "n1", ("http://127.0.0.1:2380",),
                     ("http://127.0.0.1:2379",))
    b = MemberRecord(0x91BC3C398FB3C146, "", ("http://127.0.0.1:2381",), (), is_learner=True)
    with MemberEnvs(tmp_path, SMALL) as e:
        store = KVStore(e.state)
        with store.write_batch(3) as batch:
            m = Members(batch.raw_txn, e.state.dbs)
            m.put(a)
            m.put(b)
            m.set_cluster_id(0xCDF818194E3A8C32)
        with store.write_batch(4) as batch:
            assert Members(batch.raw_txn, e.state.dbs).remove(b.id)
    with MemberEnvs(tmp_path, SMALL) as e, e.state.begin() as txn:
        m = Members(txn, e.state.dbs)
        assert m.list() == [a]
        assert m.is_removed(b.id) and m.removed_ids() == [b.id]
        assert m.cluster_id() == 0xCDF818194E3A8C32
        assert KVStore(e.state).consistent_index == 4


def test_json_uses_etcd_field_names() -> None:
    rec = MemberRecord(1, "x", ("http://p",), ("http://c",), True)
    assert json.loads(rec.to_json()) == {"id": 1, "name": "x", "peerURLs": ["http://p"],
                                        "clientURLs": ["http://c"], "isLearner": True}
    assert MemberRecord.from_json(rec.to_json()) == rec

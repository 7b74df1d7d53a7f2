"""Alarms persist with the batch that raised them."""

from __future__ import annotations

from pathlib import Path

from etcdpy.storage.alarms import AlarmMember, Alarms, AlarmType
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc import KVStore

from .conftest import SMALL


def test_activate_deactivate_persist(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path, SMALL) as e:
        s = KVStore(e.state)
        with s.write_batch(1) as b:
            a = Alarms(b.raw_txn, e.state.dbs)
            assert a.activate(2, AlarmType.NOSPACE)
            assert not a.activate(2, AlarmType.NOSPACE)
            assert a.activate(1, AlarmType.CORRUPT)
        with s.write_batch(2) as b:
            assert Alarms(b.raw_txn, e.state.dbs).deactivate(1, AlarmType.CORRUPT)
    with MemberEnvs(tmp_path, SMALL) as e, e.state.begin() as txn:
        assert Alarms(txn, e.state.dbs).list() == [AlarmMember(2, AlarmType.NOSPACE)]

"""Write batches: one revision per write request, subs per key change, atomicity."""

from __future__ import annotations

import pytest

from etcdpy.storage.errors import LeaseNotFoundError
from etcdpy.storage.mvcc import EventType, KVStore


def test_one_revision_per_request_subs_per_change(store: KVStore) -> None:
    with store.write_batch(1) as b:
        w = b.txn()
        evs = [w.put(b"a", b"1"), w.put(b"b", b"1"), w.put(b"c", b"1")]
        assert w.end() == evs
        w = b.txn()
        w.put(b"a", b"2")
        dels = w.delete_range(b"b", b"d")
        evs2 = w.end()
        w = b.txn()  # read-only request: no revision
        assert w.range(b"a").kvs[0].value == b"2"
        assert w.end() == []
    assert store.current_rev == 3 and store.consistent_index == 1
    assert [e.kv.mod_revision for e in evs] == [2, 2, 2]
    assert [(e.type, e.kv.key) for e in dels] == [(EventType.DELETE, b"b"), (EventType.DELETE, b"c")]
    assert all(e.prev_kv is not None and e.prev_kv.mod_revision == 2 for e in dels)
    assert [e.kv.mod_revision for e in evs2] == [3, 3, 3]
    # subs: a@3.0, b@3.1(t), c@3.2(t), visible through the history
    hist = store.events(b"\x00", b"\x00", 3)
    assert [(e.type, e.kv.key) for e in hist] == [
        (EventType.PUT, b"a"), (EventType.DELETE, b"b"), (EventType.DELETE, b"c")]


def test_reads_inside_a_txn_see_its_writes(store: KVStore) -> None:
    with store.write_batch(1) as b:
        w = b.txn()
        assert w.range(b"k").count == 0
        w.put(b"k", b"v")
        r = w.range(b"k")
        assert r.kvs[0].value == b"v" and r.rev == 2
        w.delete_range(b"k")
        assert w.range(b"k").count == 0
        w.end()
    assert store.current_rev == 2


def test_failed_batch_changes_nothing(store: KVStore) -> None:
    with store.write_batch(1) as b:
        w = b.txn()
        w.put(b"k", b"v")
        w.end()
    with pytest.raises(LeaseNotFoundError), store.write_batch(2) as b:
        w = b.txn()
        w.put(b"k", b"changed")
        w.put(b"k2", b"x", lease=42)  # unknown lease: the whole batch is aborted
    assert store.current_rev == 2 and store.consistent_index == 1
    assert store.range(b"k").kvs[0].value == b"v"
    assert store.range(b"k2").count == 0
    store.refresh()
    assert store.current_rev == 2 and store.consistent_index == 1


def test_consistent_index_never_moves_back(store: KVStore) -> None:
    with store.write_batch(5):
        pass
    assert store.consistent_index == 5
    with pytest.raises(AssertionError):
        store.write_batch(4)


def test_events_history_with_prev_kv(store: KVStore) -> None:
    for i in range(1, 6):
        with store.write_batch(i) as b:
            w = b.txn()
            w.put(b"k", b"%d" % i)
            w.put(b"other", b"%d" % i)
            w.end()
    evs = store.events(b"k", b"", 3, end_rev=5, prev_kv=True)
    assert [e.kv.mod_revision for e in evs] == [3, 4]
    assert [e.prev_kv.value for e in evs if e.prev_kv] == [b"1", b"2"]
    # limit 3 ends inside revision 3 (k@3, other@3): that revision is completed
    assert [e.kv.mod_revision for e in store.events(b"\x00", b"\x00", 1, limit=3)] == [
        2, 2, 3, 3]
    assert len(store.events(b"\x00", b"\x00", 1, limit=4)) == 4


def test_lease_attach_revoke_in_one_revision(store: KVStore) -> None:
    with store.write_batch(1) as b:
        w = b.txn()
        w.lease_grant(7, ttl=10)
        w.end()
        w = b.txn()
        w.put(b"a", b"1", lease=7)
        w.put(b"b", b"1", lease=7)
        w.put(b"c", b"1")
        w.end()
        w = b.txn()
        w.put(b"b", b"2")  # re-put without the lease detaches it
        w.end()
    with store.read() as rv:
        [(rec, keys)] = rv.leases()
    assert rec.id == 7 and rec.ttl == 10 and keys == [b"a"]
    with store.write_batch(2) as b:
        w = b.txn()
        evs = w.lease_revoke(7)
        w.end()
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in evs] == [(EventType.DELETE, b"a", 4)]
    assert store.current_rev == 4
    with store.read() as rv:
        assert rv.leases() == []
    assert [kv.key for kv in store.range(b"\x00", b"\x00").kvs] == [b"b", b"c"]


def test_applied_index_and_term_are_written_with_the_batch(store: KVStore) -> None:
    with store.write_batch(3, term=2) as b:
        b.set_applied_index(5, term=4)
        w = b.txn()
        w.put(b"k", b"v")
        w.end()
    assert (store.consistent_index, store.term) == (5, 4)
    with store.write_batch(6):  # a batch that does not track terms keeps the old one
        pass
    meta = store.refresh()
    assert (meta.consistent_index, meta.term, meta.current_rev) == (6, 4, 2)


def test_domain_error_inside_a_batch_can_be_caught(store: KVStore) -> None:
    with store.write_batch(1) as b:
        w = b.txn()
        w.put(b"a", b"1")
        w.end()
        w = b.txn()
        with pytest.raises(LeaseNotFoundError):
            w.put(b"b", b"1", lease=99)  # this request fails and changes nothing
        assert w.end() == []
        w = b.txn()
        w.put(b"c", b"1")
        w.end()
    assert [kv.key for kv in store.range(b"\x00", b"\x00").kvs] == [b"a", b"c"]
    assert store.current_rev == 3

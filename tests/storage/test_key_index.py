"""etcd's keyIndex semantics, on the pure history and on the LMDB index."""

from __future__ import annotations

from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc.index import Index
from etcdpy.storage.mvcc.key_index import (
    RevRecord,
    compact_history,
    generations,
    get_at,
    since,
)
from etcdpy.storage.mvcc.revision import Revision


def _r(main: int, t: bool = False) -> RevRecord:
    return RevRecord(Revision(main), t)


# put 1, put 2, delete 3, put 4, delete 5 (the documented example)
EXAMPLE = [_r(1), _r(2), _r(3, True), _r(4), _r(5, True)]


def _mains(gens: list[list[RevRecord]]) -> list[list[int]]:
    return [[r.rev.main for r in g] for g in gens]


def test_generations() -> None:
    assert _mains(generations(EXAMPLE)) == [[1, 2, 3], [4, 5], []]


def test_get_at() -> None:
    assert get_at(EXAMPLE, 0) is None
    assert get_at(EXAMPLE, 1) == _r(1)
    assert get_at(EXAMPLE, 2) == _r(2)
    assert get_at(EXAMPLE, 3) is None  # deleted
    assert get_at(EXAMPLE, 4) == _r(4)
    assert get_at(EXAMPLE, 9) is None


def test_since() -> None:
    h = [RevRecord(Revision(2, 0)), RevRecord(Revision(2, 1)), _r(4)]
    assert since(h, 2) == [Revision(2, 1), Revision(4)]
    assert since(h, 3) == [Revision(4)]


def test_compaction_example() -> None:
    after = {n: _mains(generations(compact_history(EXAMPLE, n))) for n in range(1, 7)}
    assert after[1] == [[1, 2, 3], [4, 5], []]
    assert after[2] == [[2, 3], [4, 5], []]
    assert after[3] == [[4, 5], []]
    assert after[4] == [[4, 5], []]
    assert after[5] == [[]]
    assert after[6] == [[]]


def test_lmdb_index_compaction_example(envs: MemberEnvs) -> None:
    env = envs.state
    for at, expect_left in ((2, [2, 3, 4, 5]), (3, [4, 5]), (4, [4, 5]), (5, [])):
        with env.begin(write=True) as txn:
            idx = Index(txn, env.dbs)
            kid = idx.create(b"foo")
            for rec in EXAMPLE:
                idx.append(kid, rec.rev, rec.tombstone)
            assert idx.get(kid, 2) == _r(2)
            assert idx.get(kid, 3) == _r(3, True)
            assert idx.latest(kid) == _r(5, True)
            removed, empty = idx.compact_key(kid, at)
            left = [r.rev.main for r in idx.history(kid)]
            assert left == expect_left
            assert sorted(r.rev.main for r in removed) == sorted(
                {1, 2, 3, 4, 5} - set(expect_left))
            assert empty == (expect_left == [])
            txn.abort()


def test_lmdb_index_key_order_with_long_keys(envs: MemberEnvs) -> None:
    env = envs.state
    keys = [b"a", b"a\x00", b"b" * 600, b"b" * 600 + b"\x00", b"b" * 481, b"b" * 480, b"c"]
    with env.begin(write=True) as txn:
        idx = Index(txn, env.dbs)
        ids = {k: idx.create(k) for k in keys}
        assert len(set(ids.values())) == len(keys)
        assert [k for k, _ in idx.iter_keys(b"", None)] == sorted(keys)
        assert [k for k, _ in idx.iter_keys(b"b" * 481, b"c")] == sorted(
            k for k in keys if b"b" * 481 <= k < b"c")
        assert all(idx.find(k) == ids[k] for k in keys)
        idx.remove(b"b" * 600)
        assert idx.find(b"b" * 600) is None
        assert idx.find(b"b" * 600 + b"\x00") == ids[b"b" * 600 + b"\x00"]

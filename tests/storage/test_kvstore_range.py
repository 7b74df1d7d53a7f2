"""Range rules (etcd's): single key, prefix, from-key, all, limit/more/count, revisions."""

from __future__ import annotations

import pytest

from etcdpy.storage.errors import CompactedError, FutureRevisionError
from etcdpy.storage.mvcc import KVStore

from .conftest import Applier

KEYS = [b"a", b"ab", b"abc", b"b", b"ba", b"c"]


@pytest.fixture
def filled(app: Applier) -> Applier:
    for i, k in enumerate(KEYS):
        app.put(k, b"v%d" % i)
    return app


def _keys(store: KVStore, key: bytes, end: bytes = b"", **kw: int) -> list[bytes]:
    return [kv.key for kv in store.range(key, end, **kw).kvs]  # type: ignore[arg-type]


def test_empty_store_is_at_revision_one(store: KVStore) -> None:
    r = store.range(b"\x00", b"\x00")
    assert (r.kvs, r.count, r.more, r.rev) == ((), 0, False, 1)


def test_single_prefix_fromkey_all(filled: Applier) -> None:
    s = filled.store
    assert _keys(s, b"ab") == [b"ab"]
    assert _keys(s, b"zz") == []
    assert _keys(s, b"a", b"b") == [b"a", b"ab", b"abc"]  # prefix "a"
    assert _keys(s, b"b", b"\x00") == [b"b", b"ba", b"c"]  # from key
    assert _keys(s, b"\x00", b"\x00") == KEYS  # everything
    assert _keys(s, b"b", b"a") == []  # end before start


def test_limit_more_count(filled: Applier) -> None:
    r = filled.store.range(b"\x00", b"\x00", limit=2)
    assert [kv.key for kv in r.kvs] == [b"a", b"ab"]
    assert r.count == len(KEYS) and r.more
    r = filled.store.range(b"\x00", b"\x00", limit=len(KEYS))
    assert r.count == len(KEYS) and not r.more
    r = filled.store.range(b"a", b"b", count_only=True)
    assert r.kvs == () and r.count == 3


def test_keys_only_drops_values(filled: Applier) -> None:
    r = filled.store.range(b"a", keys_only=True)
    assert r.kvs[0].value == b"" and r.kvs[0].mod_revision == 2


def test_versions_and_revisions(app: Applier) -> None:
    assert app.put(b"k", b"1") == 2
    assert app.put(b"k", b"2") == 3
    kv = app.store.range(b"k").kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 3, 2, b"2")
    assert app.delete(b"k") == 4
    assert app.store.range(b"k").count == 0
    assert app.put(b"k", b"3") == 5
    kv = app.store.range(b"k").kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version) == (5, 5, 1)
    # old revisions
    assert app.store.range(b"k", rev=2).kvs[0].value == b"1"
    assert app.store.range(b"k", rev=4).count == 0
    assert app.store.range(b"k", rev=3).rev == 5  # header revision is the current one


def test_delete_of_missing_key_creates_no_revision(app: Applier) -> None:
    app.put(b"x", b"1")
    assert app.delete(b"nothing") == 2
    assert app.delete(b"y", b"z") == 2


def test_future_and_compacted_revisions(app: Applier) -> None:
    for i in range(5):
        app.put(b"k", b"%d" % i)
    with pytest.raises(FutureRevisionError):
        app.store.range(b"k", rev=7)
    app.compact(4)
    with pytest.raises(CompactedError):
        app.store.range(b"k", rev=3)
    assert app.store.range(b"k", rev=4).kvs[0].value == b"2"  # at the compaction point works
    app.store.run_compaction()
    assert app.store.range(b"k", rev=4).kvs[0].value == b"2"
    with pytest.raises(CompactedError):
        app.compact(4)
    with pytest.raises(FutureRevisionError):
        app.compact(99)


LONG = [b"L" * 600, b"L" * 600 + b"\x00", b"M" * (100 << 10), b"L" * (1536 << 10),
        b"L" * 480, b"L" * 481]


def test_long_keys_mixed_with_short(app: Applier) -> None:
    shorts = [b"K", b"L", b"LL", b"L\xff", b"N"]
    for k in LONG + shorts:
        app.put(k, b"v" + k[:3])
    allk = sorted(LONG + shorts)
    got = [kv.key for kv in app.store.range(b"\x00", b"\x00").kvs]
    assert got == allk
    # a prefix range over the long keys
    pre = [kv.key for kv in app.store.range(b"L", b"M").kvs]
    assert pre == [k for k in allk if k.startswith(b"L")]
    # from a long key
    start = b"L" * 600
    assert [kv.key for kv in app.store.range(start, b"\x00").kvs] == [k for k in allk if k >= start]
    # single-key get, update and delete of long keys
    big = b"L" * (1536 << 10)
    assert app.store.range(big).kvs[0].value == b"vLLL"
    app.put(big, b"new")
    assert app.store.range(big).kvs[0].version == 2
    app.delete(b"L" * 600)
    assert app.store.range(b"L" * 600).count == 0
    assert app.store.range(b"L" * 600 + b"\x00").count == 1
    assert app.store.range(b"L", b"M", count_only=True).count == len(pre) - 1


def test_raw_range_returns_stored_wire_bytes(filled: Applier) -> None:
    from etcdpy.storage.mvcc import encode_kv

    s = filled.store
    plain = s.range(b"a", b"b", limit=2)
    raw = s.range(b"a", b"b", limit=2, raw=True)
    assert raw.kvs == () and raw.raw_kvs == tuple(encode_kv(kv) for kv in plain.kvs)
    assert (raw.count, raw.more) == (plain.count, plain.more)
    ko = s.range(b"a", b"b", keys_only=True, raw=True)
    assert ko.raw_kvs == tuple(encode_kv(kv) for kv in s.range(b"a", b"b", keys_only=True).kvs)

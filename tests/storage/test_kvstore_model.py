"""Model check: random puts, deletes, txns and compactions on KVStore behave like a
plain dict-of-histories model, for ranges at every uncompacted revision, including
long keys sharing a bucket prefix."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.errors import CompactedError
from etcdpy.storage.mvcc import KVStore

from .conftest import SMALL

LONG = b"P" * 500
KEYS = [b"a", b"a\x00", b"ab", b"b", LONG, LONG + b"\x00", LONG + b"a", b"P" * 480, b"z"]
key_st = st.sampled_from(KEYS)
end_st = st.sampled_from([b"", b"\x00", b"ab", b"b", b"c", LONG + b"\x00", b"P" * 481, b"zz"])
put_st = st.tuples(st.just("put"), key_st, st.binary(max_size=3))
del_st = st.tuples(st.just("del"), key_st, end_st)
req_st = st.lists(st.one_of(put_st, del_st), min_size=1, max_size=3)
step_st = st.one_of(
    st.tuples(st.just("txn"), req_st),
    # where between the last compaction and the current revision to compact
    st.tuples(st.just("compact"), st.floats(0.0, 1.0)),
)


def _in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if not end:
        return k == key
    if end == b"\x00":
        return k >= key
    return key <= k < end


class Model:
    def __init__(self) -> None:
        self.rev = 1
        self.compact_rev = -1
        # state after each revision: rev -> {key: (value, create, mod, version)}
        self.states: dict[int, dict[bytes, tuple[bytes, int, int, int]]] = {1: {}}
        self.changes: list[int] = []  # main revision of every stored change (put/tombstone)

    def txn(self, reqs: list[tuple[str, bytes, bytes]]) -> None:
        cur = dict(self.states[self.rev])
        rev = self.rev + 1
        changed = False
        for op, key, arg in reqs:
            if op == "put":
                old = cur.get(key)
                cur[key] = (arg, old[1] if old else rev, rev, old[3] + 1 if old else 1)
                changed = True
                self.changes.append(rev)
            else:
                for k in [k for k in cur if _in_range(k, key, arg)]:
                    del cur[k]
                    changed = True
                    self.changes.append(rev)
        if changed:
            self.rev = rev
            self.states[rev] = cur


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(step_st, max_size=25))
def test_store_matches_model(tmp_path_factory, steps) -> None:  # type: ignore[no-untyped-def]
    m = Model()
    with MemberEnvs(tmp_path_factory.mktemp("m"), SMALL) as e:
        s = KVStore(e.state)
        index = 0
        for step in steps:
            index += 1
            if step[0] == "txn":
                with s.write_batch(index) as b:
                    w = b.txn()
                    for op, key, arg in step[1]:
                        if op == "put":
                            w.put(key, arg)
                        else:
                            w.delete_range(key, arg)
                    w.end()
                m.txn(step[1])
            else:
                lo = max(m.compact_rev + 1, 1)
                at = lo + int(step[1] * (m.rev - lo))
                if m.compact_rev < at <= m.rev:
                    with s.write_batch(index) as b:
                        b.schedule_compaction(at)
                    m.compact_rev = at
                    if index % 2:  # sometimes leave it scheduled, sometimes physical
                        s.run_compaction(max_keys_per_txn=2)
            assert s.current_rev == m.rev
            for rev in range(1, m.rev + 1):
                if rev < m.compact_rev:
                    try:
                        s.range(b"\x00", b"\x00", rev=rev)
                    except CompactedError:
                        continue
                    raise AssertionError("read below the compaction point succeeded")
                want = m.states[max(r for r in m.states if r <= rev)]
                r = s.range(b"\x00", b"\x00", rev=rev)
                got = {kv.key: (kv.value, kv.create_revision, kv.mod_revision, kv.version)
                       for kv in r.kvs}
                assert got == want, rev
                assert [kv.key for kv in r.kvs] == sorted(want)
                for key in (b"a", LONG, b"P"):
                    for end in (b"", b"b", b"\x00", LONG + b"\x01"):
                        sub = s.range(key, end, rev=rev, limit=2)
                        keys = sorted(k for k in want if _in_range(k, key, end))
                        assert [kv.key for kv in sub.kvs] == keys[:2]
                        assert sub.count == len(keys) and sub.more == (len(keys) > 2)
        # a single-key watch (index path) sees exactly what a range watch sees
        since = max(m.compact_rev, 1)
        every = s.events(b"\x00", b"\x00", since, limit=100_000, prev_kv=True)
        assert [e.kv.mod_revision for e in every] == sorted(e.kv.mod_revision for e in every)
        for key in KEYS:
            mine = s.events(key, b"", since, limit=100_000, prev_kv=True)
            assert mine == [e for e in every if e.kv.key == key]
        s.run_compaction()
        if m.compact_rev > 0:
            # physically left: every change above the compaction point, plus the
            # revision of each key live at the compaction point
            at_compact = m.states[max(r for r in m.states if r <= m.compact_rev)]
            expect = sum(1 for main in m.changes if main > m.compact_rev) + len(at_compact)
            assert e.state.entries(b"key") == expect
            assert e.state.entries(b"kindex_revs") == expect

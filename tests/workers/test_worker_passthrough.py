"""Everything a worker does not answer itself reaches the member unchanged: streams both ways
(Watch, LeaseKeepAlive), Txn, membership, status, errors, and the auth token in the metadata
(with auth on, the worker passes even Range to the member)."""

from __future__ import annotations

import re
import urllib.request

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb
from etcdpy._pb.workerpb import worker_pb2, worker_pb2_grpc
from tests.e2e.harness import Member, etcdctl
from tests.workers.probe import channel_on, rpc_error, stats, wait_until


def _member_count(endpoint: str, method: str, code: str) -> int:
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    pattern = re.compile(r'^grpc_server_handled_total\{([^}]*)\} (\d+)', re.M)
    return sum(int(n) for labels, n in pattern.findall(text)
               if f'grpc_method="{method}"' in labels and f'grpc_code="{code}"' in labels)


def test_streams_txn_members_status_and_errors_through_a_worker(with_workers: Member) -> None:
    endpoint = with_workers.endpoint
    with channel_on(endpoint, worker=True) as on_worker, \
            channel_on(endpoint, worker=False) as on_member:
        kv_w, kv_m = pb_grpc.KVStub(on_worker), pb_grpc.KVStub(on_member)
        before = stats(on_worker)

        # Watch (bidirectional) on the worker's connection, writes on the member's.
        watch = pb_grpc.WatchStub(on_worker)
        requests = [pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w/",
                                                                         range_end=b"w0"))]
        stream = watch.Watch(iter(requests), timeout=20)
        created = next(stream)
        assert created.created and created.watch_id == 0
        put = kv_m.Put(pb.PutRequest(key=b"w/1", value=b"one"))
        event = next(stream)
        assert [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in event.events] == [
            (mvccpb.Event.PUT, b"w/1", b"one", put.header.revision)]
        stream.cancel()
        # the client's cancel reached the member: its Watch ended as Canceled
        wait_until("the member to see the cancel",
                   lambda: _member_count(endpoint, "Watch", "Canceled") == 1)

        # Lease grant, keep-alive (bidirectional), time-to-live, revoke.
        lease = pb_grpc.LeaseStub(on_worker)
        granted = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30))
        keepalives = list(lease.LeaseKeepAlive(
            iter([pb.LeaseKeepAliveRequest(ID=granted.ID)] * 2), timeout=10))
        assert [(k.ID, k.TTL) for k in keepalives] == [(granted.ID, 30)] * 2
        assert lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=granted.ID)).grantedTTL == 30
        lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=granted.ID))
        gone = list(lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=granted.ID)]),
                                         timeout=10))
        assert [(k.ID, k.TTL) for k in gone] == [(granted.ID, 0)]

        # Txn on the worker's connection, read back on the member's.
        txn = kv_w.Txn(pb.TxnRequest(
            compare=[pb.Compare(key=b"t", target=pb.Compare.VERSION, version=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=b"t", value=b"tv"))]))
        assert txn.succeeded
        assert kv_m.Range(pb.RangeRequest(key=b"t")).kvs[0].value == b"tv"

        # Membership and status answer as on the member's own connection.
        members_w = pb_grpc.ClusterStub(on_worker).MemberList(pb.MemberListRequest())
        members_m = pb_grpc.ClusterStub(on_member).MemberList(pb.MemberListRequest())
        assert members_w == members_m
        status_w = pb_grpc.MaintenanceStub(on_worker).Status(pb.StatusRequest())
        status_m = pb_grpc.MaintenanceStub(on_member).Status(pb.StatusRequest())
        # the member's gRPC ReadIndex (for tools) answers what its Status says
        point = worker_pb2_grpc.WorkerStub(on_member).ReadIndex(worker_pb2.ReadIndexRequest())
        assert point.raft_term == status_m.raftTerm
        assert point.applied_index >= status_m.raftAppliedIndex > 0
        assert (status_w.header.member_id, status_w.leader, status_w.raftTerm,
                status_w.version) == (status_m.header.member_id, status_m.leader,
                                      status_m.raftTerm, status_m.version)

        # Refused requests: the same code and words from either connection.
        for stub_call in (
            lambda kv: kv.Range(pb.RangeRequest(key=b"")),
            lambda kv: kv.Put(pb.PutRequest(key=b"")),
            lambda kv: kv.Range(pb.RangeRequest(key=b"a", revision=10_000)),
        ):
            assert rpc_error(lambda s=stub_call: s(kv_w)) == rpc_error(lambda s=stub_call: s(kv_m))

        # A method nobody serves: the member's answer, whatever the worker assumed its shape.
        assert rpc_error(lambda: on_worker.unary_unary("/etcdserverpb.KV/Nope")(b"")) == rpc_error(
            lambda: on_member.unary_unary("/etcdserverpb.KV/Nope")(b""))

        after = stats(on_worker)
        assert after.pid == before.pid and after.is_worker
        assert after.proxied_calls > before.proxied_calls


def test_with_auth_on_range_goes_to_the_member(with_workers: Member) -> None:
    endpoint = with_workers.endpoint
    etcdctl([endpoint], "put", "secret", "s3")
    etcdctl([endpoint], "user", "add", "root:rootpw")
    etcdctl([endpoint], "auth", "enable")
    with channel_on(endpoint, worker=True) as on_worker, \
            channel_on(endpoint, worker=False) as on_member:
        before = stats(on_worker)
        kv_w, kv_m = pb_grpc.KVStub(on_worker), pb_grpc.KVStub(on_member)
        request = pb.RangeRequest(key=b"secret")
        # no token: refused the same way on both connections
        assert rpc_error(lambda: kv_w.Range(request)) == rpc_error(lambda: kv_m.Range(request))
        token = pb_grpc.AuthStub(on_worker).Authenticate(
            pb.AuthenticateRequest(name="root", password="rootpw")).token
        metadata = (("token", token),)
        got_w = kv_w.Range(request, metadata=metadata)
        got_m = kv_m.Range(request, metadata=metadata)
        assert got_w == got_m and got_w.kvs[0].value == b"s3"
        wrong = (("token", "not-a-token"),)
        assert rpc_error(lambda: kv_w.Range(request, metadata=wrong)) == rpc_error(
            lambda: kv_m.Range(request, metadata=wrong))
        after = stats(on_worker)
        assert after.local_ranges == before.local_ranges  # none answered by the worker
        assert after.proxied_calls >= before.proxied_calls + 4
    # etcdctl with a user, over fresh connections, as without workers
    for _ in range(6):
        out = etcdctl([endpoint], "--user", "root:rootpw", "get", "secret").stdout
        assert out == "secret\ns3\n"

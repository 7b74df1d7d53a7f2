"""Requests served through a follower's client endpoint, and a cluster that lost its quorum."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.cluster import FAST_TIMING, running_cluster, wait_for, wait_serving
from tests.e2e.harness import Member, etcdctl
from tests.e2e.test_health_metrics import metrics

pytestmark = pytest.mark.e2e

REQUIRE_LEADER = (("hasleader", "true"),)


def _watch_one_event(member: Member, key: bytes, start: threading.Event,
                     got: list[rpc_pb2.WatchResponse]) -> None:
    channel = grpc.insecure_channel(member.endpoint)
    try:
        stub = rpc_pb2_grpc.WatchStub(channel)
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key))
        stream = stub.Watch(iter([create]), timeout=20, metadata=REQUIRE_LEADER)
        for resp in stream:
            if resp.created:
                start.set()
                continue
            if resp.events:
                got.append(resp)
                return
    finally:
        channel.close()


def test_put_get_txn_watch_lease_through_a_follower(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        lead = cluster.wait_leader()
        follower = cluster.followers()[0]
        fe = [follower.endpoint]

        # A watch on the follower sees a put made on the leader.
        created = threading.Event()
        events: list[rpc_pb2.WatchResponse] = []
        watcher = threading.Thread(target=_watch_one_event,
                                   args=(follower, b"w", created, events), daemon=True)
        watcher.start()
        assert created.wait(20), "watch not created on the follower"
        etcdctl([lead.endpoint], "put", "w", "from-leader")
        watcher.join(timeout=20)
        assert not watcher.is_alive()
        (resp,) = events
        assert [(e.kv.key, e.kv.value) for e in resp.events] == [(b"w", b"from-leader")]

        # Put and get (linearizable and serializable) on the follower.
        etcdctl(fe, "put", "k", "v1")
        assert etcdctl(fe, "get", "k", "--print-value-only").stdout.strip() == "v1"
        assert etcdctl(fe, "get", "k", "--consistency=s",
                       "--print-value-only").stdout.strip() in ("", "v1")
        etcdctl([lead.endpoint], "put", "k", "v2")
        # A linearizable read on the follower must see the leader's acknowledged write.
        assert etcdctl(fe, "get", "k", "--print-value-only").stdout.strip() == "v2"
        # That read waited until the follower applied the write, so its local (serializable)
        # state has it from now on.
        assert etcdctl(fe, "get", "k", "--consistency=s",
                       "--print-value-only").stdout.strip() == "v2"

        # Txn on the follower.
        txn = 'value("k") = "v2"\n\nput k v3\nput t yes\n\nput k no\n\n'
        out = etcdctl(fe, "txn", input=txn).stdout
        assert out.splitlines()[0] == "SUCCESS", out
        assert etcdctl([lead.endpoint], "get", "k", "--print-value-only").stdout.strip() == "v3"
        assert etcdctl([lead.endpoint], "get", "t", "--print-value-only").stdout.strip() == "yes"

        # Lease grant, attach, keep-alive and time-to-live, all through the follower (the
        # follower forwards keep-alive and TimeToLive to the leader, which owns lease expiry).
        out = etcdctl(fe, "lease", "grant", "30").stdout
        m = re.search(r"lease ([0-9a-f]+) granted with TTL\(30s\)", out)
        assert m, out
        lease = m.group(1)
        etcdctl(fe, "put", "leased", "x", f"--lease={lease}")
        out = etcdctl(fe, "lease", "keep-alive", "--once", lease).stdout
        assert f"lease {lease} keepalived with TTL(30)" in out, out
        out = etcdctl(fe, "lease", "timetolive", lease, "--keys").stdout
        m = re.search(rf"lease {lease} granted with TTL\(30s\), remaining\((\d+)s\), "
                      r"attached keys\(\[leased\]\)", out)
        assert m, out
        assert 0 < int(m.group(1)) <= 30
        leases = etcdctl([lead.endpoint], "lease", "list").stdout
        assert lease in leases
        etcdctl(fe, "lease", "revoke", lease)
        assert etcdctl([lead.endpoint], "get", "leased").stdout == ""


def test_keep_alives_through_a_follower_share_one_stream_to_the_leader(tmp_path: Path) -> None:
    """A follower forwards keep-alives on one stream to the leader, in batches, and pairs
    the leader's answers with its clients' requests in order: interleaved keep-alives of
    several leases (one unknown, answered TTL 0) come back each with its own lease's answer;
    the leader sees one stream however many keep-alives and clients came through (how they
    are batched on it: tests/server/api/test_forward.py)."""
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        lead = cluster.wait_leader()
        follower = cluster.followers()[0]
        ttls = {}
        for ttl in (30, 40, 50):
            out = etcdctl([lead.endpoint], "lease", "grant", str(ttl)).stdout
            m = re.search(r"lease ([0-9a-f]+) granted", out)
            assert m, out
            ttls[int(m.group(1), 16)] = ttl
        unknown = 0x1234567
        ttls[unknown] = 0
        order = [lease for _ in range(10) for lease in ttls]
        channel = grpc.insecure_channel(follower.endpoint)
        try:
            stub = rpc_pb2_grpc.LeaseStub(channel)
            answers = list(stub.LeaseKeepAlive(
                iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease) for lease in order]), timeout=20))
        finally:
            channel.close()
        assert [(a.ID, a.TTL) for a in answers] == [(lease, ttls[lease]) for lease in order]
        for lease in list(ttls)[:3]:
            out = etcdctl([follower.endpoint], "lease", "keep-alive", "--once",
                          f"{lease:016x}").stdout
            assert f"lease {lease:016x} keepalived with TTL({ttls[lease]})" in out, out
        seen = metrics(lead.client_url)
        forwarded = "grpc_method=KeepAlives,grpc_service=etcdpy.forward.LeaderForward"
        started = seen[f"grpc_server_started_total{{{forwarded},grpc_type=bidi_stream}}"]
        assert started == 1, "one forwarding stream, not one per keep-alive or per client"
        assert not any("grpc_method=LeaseKeepAlive" in name and value
                       for name, value in seen.items()
                       if name.startswith("grpc_server_started_total")), "nothing per lease"


def _range(member: Member, serializable: bool) -> rpc_pb2.RangeResponse:
    channel = grpc.insecure_channel(member.endpoint)
    try:
        return rpc_pb2_grpc.KVStub(channel).Range(
            rpc_pb2.RangeRequest(key=b"k", serializable=serializable), timeout=3,
            metadata=REQUIRE_LEADER)
    finally:
        channel.close()


def test_no_quorum_gives_no_leader_then_recovers(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        etcdctl(cluster.endpoints, "put", "k", "v")
        lead = cluster.wait_leader()
        survivor = cluster.followers()[0]
        victims = [m for m in cluster.members if m is not survivor]
        assert lead in victims
        # A watch that requires a leader, opened while there is one.
        channel = grpc.insecure_channel(survivor.endpoint)
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"k"))
        watch = rpc_pb2_grpc.WatchStub(channel).Watch(iter([create]), timeout=30,
                                                      metadata=REQUIRE_LEADER)
        try:
            assert next(watch).created
            for m in victims:
                m.kill()
            # etcd ends such a stream once it has had no leader for three election timeouts.
            with pytest.raises(grpc.RpcError) as ended:
                for _ in range(10):
                    next(watch)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert ended.value.details() == "etcdserver: no leader"
        finally:
            watch.cancel()
            channel.close()

        def no_leader_error() -> str | None:
            try:
                _range(survivor, serializable=True)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and \
                        exc.details() == "etcdserver: no leader":
                    return exc.details()
                raise
            return None

        wait_for("'etcdserver: no leader' from the survivor", no_leader_error)
        channel = grpc.insecure_channel(survivor.endpoint)
        try:
            with pytest.raises(grpc.RpcError) as put_error:
                rpc_pb2_grpc.KVStub(channel).Put(rpc_pb2.PutRequest(key=b"k", value=b"x"),
                                                 timeout=3, metadata=REQUIRE_LEADER)
        finally:
            channel.close()
        assert put_error.value.details() == "etcdserver: no leader"
        # Without the hasleader metadata a serializable read is still served from local state.
        channel = grpc.insecure_channel(survivor.endpoint)
        try:
            resp = rpc_pb2_grpc.KVStub(channel).Range(
                rpc_pb2.RangeRequest(key=b"k", serializable=True), timeout=3)
        finally:
            channel.close()
        assert [kv.value for kv in resp.kvs] == [b"v"]
        # A linearizable read cannot be served without a quorum.
        r = etcdctl([survivor.endpoint], "get", "k", check=False, timeout_s=30)
        assert r.returncode != 0

        for m in victims:
            m.start(cluster.initial_cluster(), "new")
        for m in cluster.members:
            wait_serving(m)
        cluster.wait_leader()
        etcdctl([survivor.endpoint], "put", "k", "again")
        assert [kv.value for kv in _range(survivor, serializable=False).kvs] == [b"again"]
        cluster.wait_same_hashkv()

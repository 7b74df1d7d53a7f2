"""Read workers on every member of a 3-member cluster: a follower's worker serves
linearizable reads that see the leader's writes and takes writes the leader then serves,
fails both as its member does while the cluster has no quorum, and serves again once it has."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.cluster import FAST_TIMING, running_cluster, wait_for, wait_serving
from tests.workers.probe import channel_on, fresh_channel, stats


def _put_outcome(channel: grpc.Channel) -> tuple[str, str]:
    try:
        pb_grpc.KVStub(channel).Put(pb.PutRequest(key=b"q", value=b"v"), timeout=30)
    except grpc.RpcError as error:
        return error.code().name, error.details()
    return "OK", ""


def _outcome(channel: grpc.Channel) -> tuple[str, str]:
    try:
        resp = pb_grpc.KVStub(channel).Range(pb.RangeRequest(key=b"c"), timeout=20)
    except grpc.RpcError as error:
        return error.code().name, error.details()
    return "OK", resp.kvs[0].value.decode()


def test_follower_worker_reads_fail_and_recover_with_the_cluster(tmp_path: Path) -> None:
    # Without pre-vote a member cut off from the others raises its term at every campaign,
    # without applying anything: the term in a worker's answers must still be the member's.
    flags = [*FAST_TIMING, "--etcdpy-read-workers", "1", "--pre-vote=false"]
    with running_cluster(tmp_path, 3, flags) as cluster:
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)
        with fresh_channel(leader.endpoint) as to_leader, \
                channel_on(follower.endpoint, worker=True) as on_worker, \
                channel_on(follower.endpoint, worker=False) as on_member:
            writes, reads = pb_grpc.KVStub(to_leader), pb_grpc.KVStub(on_worker)
            before = stats(on_worker)
            for i in range(40):
                writes.Put(pb.PutRequest(key=b"c", value=str(i).encode()), timeout=10)
                # linearizable: the follower's worker must see the write the leader acked
                assert reads.Range(pb.RangeRequest(key=b"c"), timeout=10).kvs[0].value == (
                    str(i).encode())
            # writes through the follower's worker (batched to the follower, which forwards
            # them to the leader) are acknowledged once the leader serves them
            for i in range(20):
                put = reads.Put(pb.PutRequest(key=b"f", value=str(i).encode()), timeout=10)
                got = writes.Range(pb.RangeRequest(key=b"f"), timeout=10)
                assert got.kvs[0].value == str(i).encode()
                assert got.kvs[0].mod_revision == put.header.revision
            after = stats(on_worker)
            assert after.local_ranges >= before.local_ranges + 40
            assert after.read_index_calls > before.read_index_calls
            assert after.batched_writes >= before.batched_writes + 20

            # Without quorum: the same failure through the worker as through the member.
            others = [m for m in cluster.members if m is not follower]
            for m in others:
                m.kill()
            wait_for("the follower to lose its leader",
                     lambda: cluster.status(follower).leader == 0)
            serializable = pb.RangeRequest(key=b"c", serializable=True)

            def same_newer_term() -> bool:
                via_w = reads.Range(serializable, timeout=5).header.raft_term
                via_m = pb_grpc.KVStub(on_member).Range(serializable, timeout=5).header.raft_term
                return via_w == via_m > term_before

            term_before = reads.Range(serializable, timeout=5).header.raft_term
            wait_for("a campaign's term in the worker's answers", same_newer_term)
            with ThreadPoolExecutor(4) as pool:
                via_worker = pool.submit(_outcome, on_worker)
                via_member = pool.submit(_outcome, on_member)
                put_via_worker = pool.submit(_put_outcome, on_worker)
                put_via_member = pool.submit(_put_outcome, on_member)
                failed = via_worker.result(timeout=60)
                assert failed == via_member.result(timeout=60)
                put_failed = put_via_worker.result(timeout=60)
                assert put_failed == put_via_member.result(timeout=60)
            assert failed[0] != "OK", failed
            assert put_failed[0] != "OK", put_failed

            for m in others:
                m.start(cluster.initial_cluster(), "new")
            for m in others:
                wait_serving(m)
            wait_for("reads through the worker again", lambda: _outcome(on_worker) == ("OK",
                                                                                      "39"))

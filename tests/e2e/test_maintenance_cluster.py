"""Maintenance in a 3-member cluster: Hash agrees between members that applied the same
history, and `etcdctl defrag --cluster` under a steady write load loses no acknowledged write
and leaves every member's state identical."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.cluster import (
    FAST_TIMING,
    Writers,
    assert_no_ack_lost,
    grpc_status,
    running_cluster,
    wait_for,
)
from tests.e2e.harness import Member, etcdctl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def backend_hash(member: Member) -> tuple[int, int]:
    """(revision, Hash) from one member, in one answer."""
    with grpc.insecure_channel(member.endpoint) as channel:
        resp = rpc_pb2_grpc.MaintenanceStub(channel).Hash(rpc_pb2.HashRequest(), timeout=5)
    return resp.header.revision, resp.hash


def test_defrag_cluster_under_writes_and_equal_hashes(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        endpoints = cluster.endpoints
        for i in range(30):
            etcdctl(endpoints, "put", f"fill/{i % 5}", "x" * 5000)
        writers = Writers(endpoints, count=3).start()
        try:
            writers.wait_acks(50)
            out = etcdctl(endpoints[:1], "defrag", "--cluster")
            assert sorted(out.stdout.splitlines()) == sorted(
                f"Finished defragmenting etcd member[{m.client_url}]" for m in cluster.members)
            writers.wait_acks(len(writers.acks) + 50)  # and writes go on afterwards
        finally:
            writers.stop()
        for member in cluster.members:
            assert_no_ack_lost(member, writers.acks)
            status = grpc_status(member, timeout_s=5)
            assert 0 < status.dbSizeInUse <= status.dbSize

        # Once every member has applied the same entries, their backends hash the same
        # (the applied index, which differs in time, is not hashed).
        def same_hash() -> int | None:
            answers = {backend_hash(m) for m in cluster.members}
            return answers.pop()[1] if len(answers) == 1 else None

        first = wait_for("the same Hash on every member", same_hash)
        etcdctl(endpoints, "put", "one", "more")
        second = wait_for("the same Hash on every member again", same_hash)
        assert second != first

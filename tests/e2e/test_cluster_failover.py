"""kill -9 of the leader under a write load: a new leader, no acknowledged write lost."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from tests.e2e.cluster import (
    ELECTION_MS,
    FAST_TIMING,
    Writers,
    assert_no_ack_lost,
    grpc_status,
    running_cluster,
    wait_for,
    wait_serving,
)

pytestmark = pytest.mark.e2e

# Raft promises a new leader after roughly one randomized election timeout (1x..2x); three
# leave room for a split vote, as the issue asks.
FAILOVER_BOUND_S = 3 * ELECTION_MS / 1000


# Real etcd runs the same scenario once, so the failover times have a reference beside them.
@pytest.mark.parametrize(("kind", "size"), [("etcdpy", 3), ("etcdpy", 5), ("etcd", 3)])
def test_kill_leader_under_write_load(tmp_path: Path, record_property, kind: str,  # type: ignore[no-untyped-def]
                                      size: int) -> None:
    with running_cluster(tmp_path, size, FAST_TIMING, kind=kind) as cluster:
        old_lead = cluster.wait_leader()
        old_term = cluster.status(old_lead).term
        old_lead_id = cluster.member_id(old_lead)
        survivors = [m for m in cluster.members if m is not old_lead]
        writers = Writers(cluster.endpoints, count=4).start()
        try:
            writers.wait_acks(200)
            old_lead.kill()
            killed_at = time.monotonic()

            def new_leader() -> float | None:
                # Ask the survivors directly over gRPC (cheap) so the poll adds little delay.
                leads = set()
                for m in survivors:
                    try:
                        st = grpc_status(m, timeout_s=0.5)
                    except grpc.RpcError:
                        return None
                    leads.add((st.leader, st.raftTerm))
                if len(leads) != 1:
                    return None
                ((lead, term),) = leads
                if lead in (0, old_lead_id) or term <= old_term:
                    return None
                return time.monotonic()

            elected_at = wait_for("a new leader among the survivors", new_leader,
                                  interval_s=0.01)
            writers.wait_acks(1, sent_after=killed_at)
            first_write_at = min(a.at for a in writers.sent_after(killed_at))
            writers.wait_acks(300, sent_after=killed_at)
        finally:
            writers.stop()
        failover_s = elected_at - killed_at
        write_gap_s = first_write_at - killed_at
        record_property("kill_to_new_leader_s", round(failover_s, 3))
        record_property("kill_to_first_write_s", round(write_gap_s, 3))
        print(f"\nfailover ({kind}, {size} members): kill->new leader {failover_s:.3f}s, kill->first write {write_gap_s:.3f}s")
        assert failover_s < FAILOVER_BOUND_S, f"new leader after {failover_s:.3f}s"

        new_lead = cluster.wait_leader(survivors)
        assert new_lead is not old_lead
        cluster.wait_same_hashkv(survivors)
        for m in survivors:
            assert_no_ack_lost(m, writers.acks)

        # The old leader restarts from its data dir and catches up with what it missed.
        old_lead.start(cluster.initial_cluster(), "new")
        wait_serving(old_lead)
        cluster.wait_same_hashkv()
        assert_no_ack_lost(old_lead, writers.acks)
        assert cluster.status(old_lead).leader == cluster.member_id(new_lead)

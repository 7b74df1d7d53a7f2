"""Membership changes on a running etcdpy cluster, driven by etcdctl 3.5 as an operator would."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import (
    FAST_TIMING,
    Writers,
    assert_no_ack_lost,
    running_cluster,
    wait_for,
    wait_serving,
)
from tests.e2e.harness import Member, etcdctl, free_port

pytestmark = pytest.mark.e2e

LEARNER_ERROR = "etcdserver: rpc not supported for learner"


def _wait_exit(member: Member, timeout_s: float = 30.0) -> int:
    assert member.proc is not None
    try:
        return member.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{member.name} still running:\n{member.log_tail()}") from exc


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test URL
        return json.loads(resp.read())


def _log(member: Member) -> str:
    assert member.log_path is not None
    return member.log_path.read_text(errors="replace")


def test_new_member_catches_up_by_snapshot(tmp_path: Path) -> None:
    snap = ["--snapshot-count", "1000", "--experimental-snapshot-catchup-entries", "100"]
    with running_cluster(tmp_path, 3, [*FAST_TIMING, *snap]) as cluster:
        writers = Writers(cluster.endpoints, count=8, max_puts=1250).start()
        try:
            writers.wait_acks(10_000, timeout_s=180)
        finally:
            writers.stop()
        assert len(writers.acks) == 10_000
        lead = cluster.wait_leader()
        assert "compacted Raft logs" in _log(lead)

        joiner = cluster.add()
        wait_serving(joiner, timeout_s=60)
        cluster.wait_same_hashkv(timeout_s=60)
        assert_no_ack_lost(joiner, writers.acks)
        # Its log was compacted far past index 1 on the leader, so only a snapshot could help.
        text = _log(joiner)
        assert "applying snapshot" in text and "restored state from snapshot" in text, text[-3000:]
        assert len(cluster.member_list()) == 4


def test_learner_refuses_linearizable_serves_serializable_then_promoted(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        etcdctl(cluster.endpoints, "put", "before", "1")
        follower = cluster.followers()[0]
        learner = cluster.add(learner=True, via=follower)
        entry = cluster.entry(learner)
        assert entry.get("isLearner") is True

        def serializable_get() -> str | None:
            r = etcdctl([learner.endpoint], "get", "before", "--consistency=s",
                        "--print-value-only", check=False)
            return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None

        assert wait_for("the learner serving serializable reads", serializable_get) == "1"
        for args in (["get", "before"], ["put", "x", "1"], ["del", "before"]):
            r = etcdctl([learner.endpoint], *args, check=False)
            assert r.returncode != 0
            assert LEARNER_ERROR in r.stderr, r.stderr
        status = cluster.status(learner)
        assert status.is_learner

        # Promote through a follower's endpoint: the follower forwards it to the leader. The
        # leader refuses until the learner has caught up, so retry within a bound.
        learner_id = f"{cluster.member_id(learner):x}"

        def promote() -> bool:
            r = etcdctl([follower.endpoint], "member", "promote", learner_id, check=False)
            if r.returncode == 0:
                return True
            assert "in sync with leader" in r.stderr, r.stderr
            return False

        wait_for("promotion", promote, interval_s=0.2)
        entry = cluster.entry(learner)
        assert not entry.get("isLearner", False)
        wait_for("the promoted member serving linearizable reads",
                 lambda: etcdctl([learner.endpoint], "get", "before", "--print-value-only",
                                 check=False).stdout.strip() == "1")
        etcdctl([learner.endpoint], "put", "after", "2")
        assert etcdctl([cluster.members[0].endpoint], "get", "after",
                       "--print-value-only").stdout.strip() == "2"
        assert not cluster.status(learner).is_learner


def test_remove_follower_then_leader(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 5, FAST_TIMING) as cluster:
        etcdctl(cluster.endpoints, "put", "k", "v")
        follower = cluster.followers()[0]
        cluster.remove(follower)
        code = _wait_exit(follower)
        assert "the member has been permanently removed from the cluster" in _log(follower)
        # etcd exits 0 once its server stopped because it was removed (not a crash).
        assert code == 0, _log(follower)[-2000:]
        assert len(cluster.member_list()) == 4

        lead = cluster.wait_leader()
        cluster.remove(lead, via=lead)
        assert _wait_exit(lead) == 0
        assert "the member has been permanently removed from the cluster" in _log(lead)
        new_lead = cluster.wait_leader()
        assert new_lead is not lead
        names = {m["name"] for m in cluster.member_list()}
        assert names == {m.name for m in cluster.members}
        assert len(names) == 3
        etcdctl(cluster.endpoints, "put", "k2", "v2")
        cluster.wait_same_hashkv()


def test_replace_every_member_under_writes(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        originals = list(cluster.members)
        writers = Writers(cluster.endpoints, count=2).start()
        try:
            writers.wait_acks(50)
            for old in originals:
                new = cluster.add(via=cluster.members[-1])
                wait_serving(new, timeout_s=60)
                writers.set_endpoints(cluster.endpoints)
                cluster.remove(old, via=new)
                _wait_exit(old)
                writers.set_endpoints(cluster.endpoints)
                cluster.wait_leader()
                done = len(writers.acks)
                writers.wait_acks(done + 20)
        finally:
            writers.stop()
        assert not {m.name for m in cluster.members} & {m.name for m in originals}
        names = {m["name"] for m in cluster.member_list()}
        assert names == {m.name for m in cluster.members}
        assert len(names) == 3
        cluster.wait_same_hashkv()
        for m in cluster.members:
            assert_no_ack_lost(m, writers.acks)


def test_move_leader_and_update_peer_urls(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        lead = cluster.wait_leader()
        target = cluster.followers()[0]
        target_id = cluster.member_id(target)
        out = etcdctl([lead.endpoint], "move-leader", f"{target_id:x}").stdout
        assert "Leadership transferred" in out, out
        assert cluster.wait_leader() is target

        # `member update` changes a member's peer URLs in the membership; the operator then
        # restarts that member listening on the new URL, and the others reach it there.
        other = next(m for m in cluster.members if m is not target)
        other_id = cluster.member_id(other)
        new_port = free_port()
        new_url = f"http://127.0.0.1:{new_port}"
        etcdctl([target.endpoint], "member", "update", f"{other_id:x}", f"--peer-urls={new_url}")

        # Until it listens there, `other` hears nothing from the leader, so ask the other two.
        def updated_everywhere() -> bool:
            for m in cluster.members:
                if m is other:
                    continue
                entry = next(e for e in cluster.member_list(via=m) if int(e["ID"]) == other_id)
                if entry["peerURLs"] != [new_url]:
                    return False
            return True

        wait_for("the new peer URL on every member", updated_everywhere)
        other.stop()
        other.peer_port = new_port
        other.start(cluster.initial_cluster(), "new")
        wait_serving(other)
        etcdctl([other.endpoint], "put", "after-update", "1")
        cluster.wait_same_hashkv()
        peers = _get_json(f"{new_url}/members")
        assert any(e["id"] == other_id and e["peerURLs"] == [new_url] for e in peers)


def test_remove_right_after_start_is_refused_as_unhealthy(tmp_path: Path) -> None:
    # etcd refuses to remove a voter unless the voters left have been connected to this
    # member for HealthInterval (5s); a cluster that just started has not.
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        lead = cluster.wait_leader()
        victim = cluster.followers()[0]
        r = etcdctl([lead.endpoint], "member", "remove", f"{cluster.member_id(victim):x}",
                    check=False)
        assert r.returncode != 0
        assert "etcdserver: unhealthy cluster" in r.stderr, r.stderr


def test_member_down_through_a_replacement_catches_up_from_the_new_leader(
        tmp_path: Path) -> None:
    """m1 is down while m2 is replaced by m6, and m6 then leads. m1's log ends before m6 was
    added, so on restart m1 does not know where m6 is; as in etcd, every peer stream carries
    its sender's URLs (X-PeerURLs) and m1 answers m6 there until its membership catches up.
    (Found by the fault schedules: seed 8014, a replace then a power loss of all members.)
    etcd refuses to add a voter while one is down unless --strict-reconfig-check is off."""
    args = [*FAST_TIMING, "--strict-reconfig-check=false"]
    with running_cluster(tmp_path, 5, args) as cluster:
        m1, m2, m3 = cluster.members[:3]
        etcdctl([m3.endpoint], "put", "before", "1")
        m1.stop()
        cluster.remove(m2, via=m3)
        m2.stop()
        m6 = cluster.add(via=m3)
        wait_serving(m6)
        m6_id = cluster.member_id(m6)
        lead = cluster.wait_leader(among=cluster.running())
        if lead is not m6:
            out = etcdctl([lead.endpoint], "move-leader", f"{m6_id:x}").stdout
            assert "Leadership transferred" in out, out
        assert cluster.wait_leader(among=cluster.running()) is m6
        etcdctl([m6.endpoint], "put", "after", "2")

        m1.start(cluster.initial_cluster(), "new")  # a restart: the flags are ignored
        wait_serving(m1)
        assert "added new remote peer" in _log(m1)
        got = etcdctl([m1.endpoint], "get", "after", "--consistency=s").stdout.split()
        assert got == ["after", "2"]
        cluster.wait_same_hashkv()

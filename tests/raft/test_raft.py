"""Feature tests on the in-memory network: pre-vote, check-quorum, leadership transfer,
ReadIndex, flow control, snapshots and membership."""

from __future__ import annotations

import pytest

from etcdpy.raft import (
    ConfChange,
    ConfChangeType,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    StateType,
)
from etcdpy.raft.status import ProgressState

from .network import Network, compact

MT = MessageType


def net(n: int = 3, **kw: object) -> Network:
    cfg = {"pre_vote": False, "check_quorum": False, **kw}
    return Network(list(range(1, n + 1)), **cfg)  # type: ignore[arg-type]


# --- pre-vote and check-quorum -------------------------------------------------------


def test_prevote_keeps_a_partitioned_node_from_raising_terms() -> None:
    nt = net(pre_vote=True)
    nt.campaign(1)
    nt.isolate(3)
    for _ in range(5):
        nt.elapse_election(3)
    assert nt[3].term == 2 and nt[3].state == StateType.PRE_CANDIDATE
    nt.recover()
    nt.heartbeat(1)
    assert nt[3].state == StateType.FOLLOWER and nt[3].raft.lead == 1
    assert [p.term for p in nt.peers.values()] == [2, 2, 2]


def test_without_prevote_a_returning_node_disrupts_the_leader() -> None:
    nt = net()
    nt.campaign(1)
    nt.isolate(3)
    nt.elapse_election(3)
    nt.elapse_election(3)
    assert nt[3].term == 4
    nt.recover()
    nt.heartbeat(1)  # 3 ignores the stale heartbeat without answering ...
    assert nt[1].state == StateType.LEADER
    nt.elapse_election(3)  # ... and its next vote request (term 4) deposes the leader
    assert nt[1].state == StateType.FOLLOWER and nt[1].term == 5


def test_check_quorum_leader_steps_down_when_isolated() -> None:
    nt = net(check_quorum=True)
    nt.campaign(1)
    nt.isolate(1)
    r = nt[1].raft
    for _ in range(2 * r.election_timeout):
        nt.tick(1)
    assert r.state == StateType.FOLLOWER and r.term == 2


def test_check_quorum_lease_ignores_votes_while_leader_is_heard() -> None:
    nt = net(check_quorum=True)
    nt.campaign(1)
    nt.campaign(2)  # 1 and 3 heard from 1 just now: the vote is ignored
    assert nt[1].state == StateType.LEADER and nt[3].term == 2
    assert nt[2].state == StateType.CANDIDATE
    # 2's term is now ahead; with check-quorum the leader learns of it through the
    # APP_RESP sent for its stale-term heartbeat and steps down.
    nt.heartbeat(1)
    assert nt[1].state == StateType.FOLLOWER and nt[1].term == 3


def test_lower_term_heartbeat_gets_an_answer_with_prevote() -> None:
    nt = net(pre_vote=True)
    nt.campaign(1)
    nt.isolate(1)
    nt.campaign(2)
    assert nt[2].state == StateType.LEADER and nt[2].term == 3
    nt.recover()
    nt.heartbeat(1)
    assert nt[1].state == StateType.FOLLOWER and nt[1].term == 3 and nt[1].raft.lead == 0


# --- leadership transfer ---------------------------------------------------------------


def test_transfer_to_up_to_date_follower() -> None:
    nt = net(pre_vote=True, check_quorum=True)
    nt.campaign(1)
    nt.transfer_leader(1, 3)
    assert nt[3].state == StateType.LEADER and nt[1].state == StateType.FOLLOWER
    assert nt[3].term == 3


def test_transfer_catches_up_a_lagging_follower_first() -> None:
    nt = net()
    nt.campaign(1)
    nt.isolate(3)
    nt.propose(1, b"a")
    nt.recover()
    nt.transfer_leader(1, 3)
    assert nt[3].state == StateType.LEADER
    assert b"a" in nt[3].applied_data() or nt[3].log()[-2].data == b"a"


def test_proposals_dropped_during_transfer_and_aborted_after_timeout() -> None:
    nt = net()
    nt.campaign(1)
    nt.isolate(3)
    nt.transfer_leader(1, 3)
    assert nt[1].raft.lead_transferee == 3
    with pytest.raises(ProposalDropped):
        nt[1].node.propose(b"x")
    for _ in range(nt[1].raft.election_timeout):
        nt.tick(1)
    assert nt[1].raft.lead_transferee == 0 and nt[1].state == StateType.LEADER
    nt.propose(1, b"x")
    assert b"x" in nt[1].applied_data()


def test_transfer_to_self_or_learner_is_ignored() -> None:
    nt = Network([1, 2], learners=[3], pre_vote=False, check_quorum=False)
    nt.campaign(1)
    nt.transfer_leader(1, 1)
    nt.transfer_leader(1, 3)
    assert nt[1].state == StateType.LEADER and nt[1].raft.lead_transferee == 0


# --- ReadIndex ------------------------------------------------------------------------------


def test_read_index_on_leader_and_follower() -> None:
    nt = net()
    nt.campaign(1)
    nt.propose(1, b"a")
    last = nt[1].raft.raft_log.last_index()  # "a" is committed: the read index is its index
    nt.read_index(1, b"l")
    nt.read_index(3, b"f")
    assert [(rs.index, rs.request_ctx) for rs in nt[1].read_states] == [(last, b"l")]
    assert [(rs.index, rs.request_ctx) for rs in nt[3].read_states] == [(last, b"f")]


def test_read_index_needs_a_quorum_of_heartbeat_acks() -> None:
    nt = net()
    nt.campaign(1)
    nt.isolate(1)
    nt.read_index(1, b"stuck")
    assert nt[1].read_states == []
    nt.recover()
    nt.heartbeat(1)  # carries the pending context: the read completes
    assert [rs.request_ctx for rs in nt[1].read_states] == [b"stuck"]


def test_one_heartbeat_round_serves_every_queued_read() -> None:
    nt = net()
    nt.campaign(1)
    nt.isolate(1)
    for ctx in (b"a", b"b", b"c"):
        nt.read_index(1, ctx)
    nt.recover()
    before = len(nt.delivered)
    nt.heartbeat(1)
    round_msgs = [m for m in nt.delivered[before:] if m.type == MT.HEARTBEAT]
    assert {m.context for m in round_msgs} == {b"c"}  # one round, newest context
    assert [rs.request_ctx for rs in nt[1].read_states] == [b"a", b"b", b"c"]


def test_read_index_deferred_until_leader_commits_in_its_term() -> None:
    nt = net()
    nt.campaign(1)
    nt.ignore(MT.APP)  # 2 wins term 2 but cannot commit its empty entry
    nt.campaign(2)
    assert nt[2].state == StateType.LEADER
    nt.read_index(2, b"r")
    assert nt[2].read_states == [] and len(nt[2].raft.pending_read_index_messages) == 1
    nt.recover()
    nt.heartbeat(2)  # unpauses the probes: 2's entry commits, then the read proceeds
    assert [rs.request_ctx for rs in nt[2].read_states] == [b"r"]
    assert nt[2].read_states[0].index >= 2


def test_lease_based_read_answers_without_a_round() -> None:
    nt = net(check_quorum=True, read_only_lease_based=True)
    nt.campaign(1)
    nt.isolate(1)  # no heartbeat can be acknowledged
    nt.read_index(1, b"lease")
    assert [rs.request_ctx for rs in nt[1].read_states] == [b"lease"]


# --- flow control -----------------------------------------------------------------------------


def test_inflight_window_limits_unacknowledged_appends() -> None:
    nt = net(2, max_inflight_msgs=3)
    nt.campaign(1)
    nt.ignore(MT.APP_RESP)
    for i in range(10):
        nt.propose(1, b"p%d" % i)
    pr = nt[1].raft.trk.progress[2]
    assert pr.state == ProgressState.REPLICATE and pr.inflights.full()
    sent = [m for m in nt.delivered if m.type == MT.APP and m.to == 2 and m.entries]
    assert len([m for m in sent if m.entries[0].data.startswith(b"p")]) == 3
    nt.recover()
    # A heartbeat response frees one slot of the full window (the acknowledgements were
    # lost); the append that goes out gets the follower's answer and replication resumes.
    nt.heartbeat(1)
    nt.propose(1, b"last")
    assert nt[2].applied_data()[-1] == b"last"


def test_inflight_bytes_limit() -> None:
    nt = net(2, max_inflight_msgs=100, max_inflight_bytes=1000, max_size_per_msg=600)
    nt.campaign(1)
    nt.ignore(MT.APP_RESP)
    for _ in range(5):
        nt.propose(1, b"x" * 400)
    pr = nt[1].raft.trk.progress[2]
    assert pr.inflights.full() and pr.inflights.bytes >= 1000 and pr.inflights.count() < 5


def test_entries_are_batched_up_to_max_size_per_msg() -> None:
    nt = net(2, max_size_per_msg=100)
    nt.campaign(1)
    nt.isolate(2)
    for _ in range(6):
        nt.propose(1, b"y" * 30)
    nt.recover()
    before = len(nt.delivered)
    nt.heartbeat(1)
    apps = [m for m in nt.delivered[before:] if m.type == MT.APP and m.entries]
    assert apps and all(sum(e.size() for e in m.entries) <= 100 for m in apps)
    assert max(len(m.entries) for m in apps) > 1


def test_uncommitted_size_limit_refuses_then_recovers() -> None:
    nt = net(2, max_uncommitted_entries_size=100)
    nt.campaign(1)
    nt.isolate(2)
    nt.propose(1, b"a" * 60)
    with pytest.raises(ProposalDropped):
        nt.propose(1, b"b" * 60)
    nt.recover()
    nt.heartbeat(1)
    nt.propose(1, b"b" * 60)
    assert nt[2].applied_data() == [b"a" * 60, b"b" * 60]


# --- snapshots -------------------------------------------------------------------------------


def test_lagging_follower_gets_a_snapshot_and_catches_up() -> None:
    nt = net()
    nt.campaign(1)
    nt.isolate(3)
    for i in range(5):
        nt.propose(1, b"e%d" % i)
    applied = nt[1].raft.raft_log.applied
    compact(nt, 1, applied)
    nt.recover()
    nt.heartbeat(1)
    snaps = [m for m in nt.delivered if m.type == MT.SNAP]
    assert len(snaps) == 1 and snaps[0].snapshot is not None
    assert nt[3].storage.snapshot().metadata.index == applied
    nt.propose(1, b"after")
    assert nt[3].applied_data() == [b"after"]
    assert nt[1].raft.trk.progress[3].state == ProgressState.REPLICATE


def test_report_unreachable_moves_replicating_follower_to_probe() -> None:
    nt = net()
    nt.campaign(1)
    pr = nt[1].raft.trk.progress[2]
    assert pr.state == ProgressState.REPLICATE
    nt[1].node.report_unreachable(2)
    assert pr.state == ProgressState.PROBE


def test_snapshot_status_failure_and_success() -> None:
    nt = net()
    nt.campaign(1)
    nt.isolate(3)
    nt.propose(1, b"a")
    applied = nt[1].raft.raft_log.applied
    compact(nt, 1, applied)
    nt.recover()
    nt.ignore(MT.SNAP)
    nt.heartbeat(1)
    pr = nt[1].raft.trk.progress[3]
    assert pr.state == ProgressState.SNAPSHOT and pr.pending_snapshot == applied
    nt[1].node.report_snapshot(3, failed=True)
    assert pr.state == ProgressState.PROBE and pr.next == pr.match + 1 and pr.msg_app_flow_paused
    nt.recover()
    nt.heartbeat(1)  # probing finds the gap again: a new snapshot, delivered this time
    assert pr.state == ProgressState.REPLICATE and pr.match == applied


def test_follower_ignores_stale_snapshot() -> None:
    nt = net()
    nt.campaign(1)
    nt.propose(1, b"a")
    old = nt[2].raft.raft_log.committed - 1
    snap = nt[1].storage.create_snapshot(old, nt[1].raft.trk.conf_state(), b"")
    nt[2].node.step(Message(type=MT.SNAP, from_=1, to=2, term=nt[1].term, snapshot=snap))
    out = nt[2].drain()
    resp = next(m for m in out if m.type == MT.APP_RESP)
    assert resp.index == nt[2].raft.raft_log.committed  # ignored: acknowledges its commit


# --- membership -----------------------------------------------------------------------------


def cc(t: ConfChangeType, node_id: int) -> ConfChange:
    return ConfChange(t, node_id)


def test_add_learner_then_promote() -> None:
    nt = net(2)
    nt.campaign(1)
    nt.propose_conf_change(1, cc(ConfChangeType.ADD_LEARNER_NODE, 3))
    p3 = nt.add_peer(3)  # bootstrapped with the original voters; it learns from the log
    nt.heartbeat(1)
    nt.propose(1, b"x")
    assert b"x" in p3.applied_data() and p3.raft.is_learner
    # A learner never campaigns, and its acks do not count toward commit.
    for _ in range(3 * p3.raft.election_timeout):
        p3.node.tick()
    assert p3.state == StateType.FOLLOWER
    nt.propose_conf_change(1, cc(ConfChangeType.ADD_NODE, 3))
    nt.heartbeat(1)
    assert nt[1].raft.trk.config.voters == {1, 2, 3} and not p3.raft.is_learner


def test_learner_does_not_count_toward_quorum() -> None:
    nt = Network([1, 2], learners=[3], pre_vote=False, check_quorum=False)
    nt.campaign(1)
    nt.isolate(2)
    nt.propose(1, b"x")
    assert nt[1].raft.raft_log.committed < nt[1].raft.raft_log.last_index()
    assert nt[3].log()[-1].data == b"x"


def test_learner_is_not_asked_for_votes() -> None:
    nt = Network([1, 2], learners=[3], pre_vote=False, check_quorum=False)
    nt.campaign(1)
    assert not [m for m in nt.delivered if m.type == MT.VOTE and m.to == 3]


def test_remove_follower_shrinks_quorum() -> None:
    nt = net()
    nt.campaign(1)
    nt.propose_conf_change(1, cc(ConfChangeType.REMOVE_NODE, 3))
    assert 3 not in nt[1].raft.trk.progress
    nt.isolate(3)
    nt.cut(1, 2)
    nt.propose(1, b"alone?")  # quorum of {1, 2} needs 2
    assert b"alone?" not in nt[1].applied_data()
    nt.recover()
    nt.heartbeat(1)
    assert b"alone?" in nt[1].applied_data()


def test_removed_leader_steps_down_and_others_elect() -> None:
    nt = net()
    nt.campaign(1)
    nt.propose_conf_change(1, cc(ConfChangeType.REMOVE_NODE, 1))
    assert nt[1].state == StateType.FOLLOWER
    with pytest.raises(ProposalDropped):
        nt[1].node.propose(b"x")
    nt.campaign(2)
    assert nt[2].state == StateType.LEADER


def test_second_conf_change_while_pending_becomes_empty_entry() -> None:
    nt = net()
    nt.campaign(1)
    nt.isolate(2)
    nt.isolate(3)
    nt.propose_conf_change(1, cc(ConfChangeType.ADD_LEARNER_NODE, 4))
    nt.propose_conf_change(1, cc(ConfChangeType.REMOVE_NODE, 3))
    log = nt[1].log()
    assert log[-2].type.name == "CONF_CHANGE" and log[-1].type.name == "NORMAL"
    assert log[-1].data == b""
    nt.recover()
    nt.heartbeat(1)
    assert nt[1].raft.trk.config.learners == {4} and 3 in nt[1].raft.trk.config.voters


def test_no_campaign_with_unapplied_conf_change() -> None:
    nt = net()
    nt.campaign(1)
    r2 = nt[2].raft
    # Pretend 2 learned of a committed conf change it has not applied yet.
    nt.isolate(2)
    nt.propose_conf_change(1, cc(ConfChangeType.ADD_LEARNER_NODE, 4))
    nt.recover()
    have = nt[2].raft.raft_log.last_index()
    missing = tuple(e for e in nt[1].log() if e.index > have)
    assert any(e.type.name == "CONF_CHANGE" for e in missing)
    nt.peers[2].node.step(
        Message(
            type=MT.APP,
            from_=1,
            to=2,
            term=nt[1].term,
            index=have,
            log_term=nt[2].raft.raft_log.last_term(),
            entries=missing,
            commit=nt[1].raft.raft_log.committed,
        )
    )
    assert nt[2].raft.raft_log.committed > nt[2].raft.raft_log.applied
    # Do not drain (apply) yet: the conf change is committed but unapplied.
    r2.step(Message(type=MT.HUP, from_=2))
    assert r2.state == StateType.FOLLOWER


def test_member_joining_with_empty_storage_learns_the_whole_configuration() -> None:
    """A member added later replays the bootstrap entries: it must not believe itself
    alone (which would let it elect itself in a cluster of one)."""
    nt = net()
    nt.campaign(1)
    nt.propose(1, b"before")
    nt.propose_conf_change(1, cc(ConfChangeType.ADD_NODE, 4))
    p4 = nt.add_peer(4, MemoryStorage())  # started empty, as `member add` then start
    assert not p4.raft.promotable()
    nt.heartbeat(1)
    nt.propose(1, b"after")
    assert p4.raft.trk.config.voters == {1, 2, 3, 4}
    assert p4.applied_data() == [b"before", b"after"]
    assert nt[1].raft.trk.progress[4].match == nt[1].raft.raft_log.last_index()


def test_propose_many_sends_one_append_per_follower() -> None:
    nt = net()
    nt.campaign(1)
    before = len(nt.delivered)
    nt[1].node.propose_many([b"a", b"b", b"c"])
    nt.flush(1)
    apps = [m for m in nt.delivered[before:] if m.type == MT.APP and m.entries]
    assert sorted(m.to for m in apps) == [2, 3]
    assert all([e.data for e in m.entries] == [b"a", b"b", b"c"] for m in apps)
    assert nt[3].applied_data() == [b"a", b"b", b"c"]


def test_reads_within_one_ready_cycle_share_one_heartbeat_round() -> None:
    nt = net()
    nt.campaign(1)
    for ctx in (b"r1", b"r2", b"r3"):
        nt[1].node.read_index(ctx)
    rd = nt[1].node.ready()
    beats = [m for m in rd.messages if m.type == MT.HEARTBEAT]
    assert sorted(m.to for m in beats) == [2, 3] and {m.context for m in beats} == {b"r3"}
    nt[1].node.advance()
    nt.send(*rd.messages)
    assert [rs.request_ctx for rs in nt[1].read_states] == [b"r1", b"r2", b"r3"]

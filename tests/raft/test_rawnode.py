"""RawNode: the Ready/advance contract, restart from storage, and input validation."""

from __future__ import annotations

import random

import pytest

from etcdpy.raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RaftConfig,
    RawNode,
    Ready,
    StateType,
    StepLocalMsg,
    StepPeerNotFound,
)


def node(storage: MemoryStorage, nid: int = 1, **kw: object) -> RawNode:
    return RawNode(RaftConfig(id=nid, rng=random.Random(nid), **kw), storage)  # type: ignore[arg-type]


def persist(s: MemoryStorage, rd: Ready) -> None:
    if rd.snapshot is not None:
        s.apply_snapshot(rd.snapshot)
    s.append(rd.entries)
    if rd.hard_state is not None:
        s.set_hard_state(rd.hard_state)


def run(n: RawNode, s: MemoryStorage, limit: int = 20) -> list[Ready]:
    out: list[Ready] = []
    for _ in range(limit):
        if not n.has_ready():
            return out
        rd = n.ready()
        persist(s, rd)
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                n.apply_conf_change(ConfChange.decode(e.data))
        n.advance()
        out.append(rd)
    raise AssertionError("no quiescence")


def fresh(voters: list[int], nid: int = 1, **kw: object) -> tuple[RawNode, MemoryStorage]:
    """A founding member that has handled its first Ready (the bootstrap entries)."""
    s = MemoryStorage.bootstrap(voters)
    n = node(s, nid, **kw)
    rd = n.ready()
    assert [e.type for e in rd.committed_entries] == [EntryType.CONF_CHANGE] * len(voters)
    for e in rd.committed_entries:
        n.apply_conf_change(ConfChange.decode(e.data))
    n.advance()
    return n, s


def test_bootstrap_entries_must_be_applied_before_campaigning() -> None:
    s = MemoryStorage.bootstrap([1])
    n = node(s)
    n.campaign()  # refused: the configuration entries are committed but not applied
    assert n.status().soft_state.raft_state == StateType.FOLLOWER
    run(n, s)
    n.campaign()
    run(n, s)
    assert n.status().soft_state.raft_state == StateType.LEADER


def test_single_node_campaign_commits_after_persisting() -> None:
    n, s = fresh([1])
    assert not n.has_ready()
    n.campaign()
    readies = run(n, s)
    # The vote is persisted before it counts: candidate -> (advance) -> leader.
    assert readies[0].soft_state is not None
    assert readies[0].soft_state.raft_state == StateType.PRE_CANDIDATE
    assert any(rd.hard_state == HardState(2, 1, 1) and rd.must_sync for rd in readies)
    committed = [e for rd in readies for e in rd.committed_entries]
    assert committed == [Entry(2, 2)]
    # An entry is committed only in a Ready after the one that asked to persist it.
    first_with_entries = next(i for i, rd in enumerate(readies) if rd.entries)
    first_with_commit = next(i for i, rd in enumerate(readies) if rd.committed_entries)
    assert first_with_commit > first_with_entries
    n.propose(b"hello")
    committed = [e for rd in run(n, s) for e in rd.committed_entries]
    assert committed == [Entry(2, 3, data=b"hello")]
    st = n.status()
    assert st.applied == 3 and st.progress[1].match == 3


def test_restart_keeps_term_vote_commit_and_log() -> None:
    n, s = fresh([1])
    n.campaign()
    run(n, s)
    n.propose(b"a")
    run(n, s)
    restarted = node(s, applied=3)
    st = restarted.status()
    assert st.hard_state == HardState(term=2, vote=1, commit=3)
    assert st.soft_state.raft_state == StateType.FOLLOWER
    assert not restarted.has_ready()  # nothing to re-apply
    # A restart with applied=0 re-delivers the committed entries.
    again = node(s)
    rd = again.ready()
    assert [e.data for e in rd.committed_entries][-2:] == [b"", b"a"]
    assert len(rd.committed_entries) == 3  # with the bootstrap entry


def test_propose_without_leader_is_dropped() -> None:
    n = node(MemoryStorage.bootstrap([1, 2, 3]))
    with pytest.raises(ProposalDropped):
        n.propose(b"x")


def test_step_rejects_local_messages_and_unknown_peers() -> None:
    n = node(MemoryStorage.bootstrap([1, 2, 3]))
    with pytest.raises(StepLocalMsg):
        n.step(Message(type=MessageType.HUP, from_=2, to=1))
    with pytest.raises(StepPeerNotFound):
        n.step(Message(type=MessageType.APP_RESP, from_=9, to=1, term=1))


def test_messages_split_by_durability_and_never_to_self() -> None:
    n, s = fresh([1, 2, 3], pre_vote=False)
    n.campaign()
    rd = n.ready()
    assert {m.type for m in rd.messages} == {MessageType.VOTE}
    assert {m.to for m in rd.messages} == {2, 3}
    assert rd.persisted_messages == ()  # our own vote stays inside
    assert rd.must_sync and rd.hard_state == HardState(2, 1, 3)
    persist(s, rd)
    n.advance()
    for peer in (2, 3):
        n.step(Message(type=MessageType.VOTE_RESP, from_=peer, to=1, term=2))
    rd = n.ready()
    assert rd.soft_state is not None and rd.soft_state.raft_state == StateType.LEADER
    assert [m.type for m in rd.messages] == [MessageType.APP, MessageType.APP]


def test_ready_twice_without_advance_is_a_bug() -> None:
    n, _ = fresh([1])
    n.campaign()
    n.ready()
    with pytest.raises(AssertionError):
        n.ready()


def test_conf_change_proposal_and_apply() -> None:
    n, s = fresh([1])
    n.campaign()
    run(n, s)
    n.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER_NODE, 2))
    run(n, s)
    st = n.status()
    assert st.progress[2].is_learner
    assert n.apply_conf_change(ConfChange(ConfChangeType.ADD_NODE, 2)).voters == (1, 2)


def test_committed_entries_are_paged_by_max_committed_size_per_ready() -> None:
    size = Entry(1, 1, data=b"z" * 100).size()
    n, s = fresh([1], max_committed_size_per_ready=3 * size)
    n.campaign()
    run(n, s)
    for _ in range(7):
        n.propose(b"z" * 100)
    batches = [len(rd.committed_entries) for rd in run(n, s) if rd.committed_entries]
    assert sum(batches) == 7 and max(batches) <= 3 and len(batches) >= 3


def test_describe_renders_like_etcd() -> None:
    from etcdpy.raft.describe import describe_entry, describe_message

    e = Entry(1, 4, data=b"x")
    cc = Entry(2, 5, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4).encode())
    m = Message(MessageType.APP, to=2, from_=1, term=1, log_term=1, index=3, commit=3, entries=(e,))
    assert describe_entry(e) == '1/4 EntryNormal "x"'
    assert describe_entry(cc) == "2/5 EntryConfChange l4"
    assert (
        describe_message(m) == '1->2 MsgApp Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "x"]'
    )
    rej = Message(MessageType.APP_RESP, to=1, from_=2, term=1, index=5, reject=True, reject_hint=3)
    assert describe_message(rej) == "2->1 MsgAppResp Term:1 Log:0/5 Rejected (Hint: 3)"


def test_applied_beyond_commit_is_a_config_error() -> None:
    from etcdpy.raft import ConfigInvalid

    with pytest.raises(ConfigInvalid):
        node(MemoryStorage.bootstrap([1]), applied=9)

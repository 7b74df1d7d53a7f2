"""Tests organised by the rules of the Raft paper (Ongaro & Ousterhout, 2014, §5).

Plain Raft here: pre-vote and check-quorum are off unless a test says otherwise.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from etcdpy.raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    ReadState,
    StateType,
)

from .network import Network, compact, preset_peer

PLAIN = {"pre_vote": False, "check_quorum": False}


def net(n: int = 3, **kw: object) -> Network:
    return Network(list(range(1, n + 1)), **{**PLAIN, **kw})  # type: ignore[arg-type]


# --- §5.1 basics: terms -------------------------------------------------------


@pytest.mark.parametrize("state", ["follower", "candidate", "leader"])
def test_update_term_from_message(state: str) -> None:
    """A node that sees a higher term adopts it and becomes a follower (§5.1)."""
    nt = net()
    if state == "candidate":
        nt.isolate(1)
        nt.campaign(1)
    elif state == "leader":
        nt.campaign(1)
    nt.recover()
    nt.peers[1].node.step(Message(type=MessageType.APP, from_=2, to=1, term=5))
    assert nt[1].term == 5 and nt[1].state == StateType.FOLLOWER


def test_reject_stale_term_message() -> None:
    """A request with a stale term is ignored (§5.1)."""
    nt = net()
    nt.campaign(1)  # term 2 (the bootstrap entries are of term 1)
    nt.campaign(2)  # term 3
    before = nt[2].log()
    nt[2].node.step(Message(type=MessageType.APP, from_=1, to=2, term=2, entries=(Entry(2, 99),)))
    assert nt[2].log() == before and nt[2].term == 3


# --- §5.2 leader election -----------------------------------------------------------


def test_follower_starts_election_on_timeout() -> None:
    nt = net()
    r = nt[1].raft
    nt.isolate(1)
    for _ in range(2 * r.election_timeout):
        nt.tick(1)
    assert r.state == StateType.CANDIDATE and r.term == 2 and r.vote == 1
    sent = [m for m in nt.delivered if m.type == MessageType.VOTE]
    assert sent == []  # all dropped by the isolation, but they were sent:
    assert nt[1].raft.trk.votes == {1: True}


@pytest.mark.parametrize(
    ("size", "grants", "state"),
    [
        (1, [], StateType.LEADER),
        (3, [2], StateType.LEADER),
        (3, [2, 3], StateType.LEADER),
        (5, [2, 3], StateType.LEADER),
        (5, [2], StateType.CANDIDATE),
        (3, [], StateType.CANDIDATE),
        (5, [], StateType.CANDIDATE),
    ],
)
def test_leader_election_in_one_round(size: int, grants: list[int], state: StateType) -> None:
    """A candidate wins with votes from a majority, else it stays a candidate (§5.2)."""
    nt = net(size)
    for j in range(2, size + 1):
        if j not in grants:
            nt.cut(1, j)
    nt.campaign(1)
    assert nt[1].state == state and nt[1].term == 2


def test_each_node_votes_once_per_term_first_come() -> None:
    nt = net()
    nt.isolate(1)
    nt.isolate(2)
    r3 = nt[3].raft
    last = nt[3].raft.raft_log.last_index()
    for frm in (1, 2, 1):  # the repeat from 1 is granted again
        vote = Message(type=MessageType.VOTE, from_=frm, to=3, term=2, log_term=1, index=last)
        nt[3].node.step(vote)
    out = nt[3].drain()
    assert r3.vote == 1
    assert [(m.to, m.reject) for m in out if m.type == MessageType.VOTE_RESP] == [
        (1, False),
        (2, True),
        (1, False),
    ]


def test_candidate_falls_back_to_follower_on_leader_append() -> None:
    nt = net()
    nt.isolate(1)
    nt.campaign(1)
    assert nt[1].state == StateType.CANDIDATE
    nt[1].node.step(Message(type=MessageType.APP, from_=2, to=1, term=2))
    assert nt[1].state == StateType.FOLLOWER and nt[1].raft.lead == 2


def test_election_timeout_is_randomized_in_range() -> None:
    nt = net()
    r = nt[1].raft
    seen = set()
    for _ in range(200):
        r.become_follower(r.term + 1, 0)
        assert r.election_timeout <= r.randomized_election_timeout < 2 * r.election_timeout
        seen.add(r.randomized_election_timeout)
    assert len(seen) > r.election_timeout // 2


def test_vote_requires_an_up_to_date_log() -> None:
    """§5.4.1: a vote is denied to a candidate whose log is less up to date."""
    nt = net()
    preset_peer(nt, 1, [1, 1], term=1)
    preset_peer(nt, 2, [1, 1, 1], term=1)
    preset_peer(nt, 3, [1, 2], term=2)
    nt.campaign(1)  # shorter than 2's and older last term than 3's
    # Both refuse, so 1 loses the election outright and returns to follower.
    resps = [(m.from_, m.reject) for m in nt.delivered if m.type == MessageType.VOTE_RESP]
    assert sorted(resps) == [(2, True), (3, True)]
    assert nt[1].state == StateType.FOLLOWER
    nt.campaign(3)  # last term 2 beats everybody
    assert nt[3].state == StateType.LEADER


# --- §5.3 log replication -------------------------------------------------------------


def test_leader_replicates_and_commits_on_majority() -> None:
    nt = net(5)
    nt.campaign(1)
    base = nt[1].raft.raft_log.committed  # 5 bootstrap entries and the leader's empty one
    nt.cut(1, 4)
    nt.cut(1, 5)
    nt.propose(1, b"x")
    assert nt[1].raft.raft_log.committed == base + 1  # 1, 2, 3 of 5
    assert [p.applied_data() for p in nt.peers.values()] == [[b"x"]] * 3 + [[]] * 2
    nt.cut(1, 3)
    nt.propose(1, b"y")
    assert nt[1].raft.raft_log.committed == base + 1  # only 1 and 2 hold y


def test_follower_rejects_append_that_does_not_match() -> None:
    nt = net()
    preset_peer(nt, 2, [1, 2], term=2)
    p = nt[2]
    p.node.step(Message(type=MessageType.APP, from_=1, to=2, term=2, index=2, log_term=1))
    out = p.drain()
    resp = next(m for m in out if m.type == MessageType.APP_RESP)
    assert resp.reject and resp.index == 2 and (resp.reject_hint, resp.log_term) == (1, 1)


def test_follower_deletes_conflicting_entries() -> None:
    nt = net()
    preset_peer(nt, 2, [1, 2, 2], term=3)
    p = nt[2]
    ents = (Entry(3, 2), Entry(3, 3), Entry(3, 4))
    p.node.step(
        Message(type=MessageType.APP, from_=1, to=2, term=3, index=1, log_term=1, entries=ents)
    )
    p.drain()
    assert [(e.term, e.index) for e in p.log()] == [(1, 1), (3, 2), (3, 3), (3, 4)]


FIGURE7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE7_FOLLOWERS = [
    [1, 1, 1, 4, 4, 5, 5, 6, 6],  # (a)
    [1, 1, 1, 4],  # (b)
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  # (c)
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  # (d)
    [1, 1, 1, 4, 4, 4, 4],  # (e)
    [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  # (f)
]


@pytest.mark.parametrize("follower", FIGURE7_FOLLOWERS, ids=list("abcdef"))
def test_leader_brings_follower_logs_into_consistency(follower: list[int]) -> None:
    """Figure 7: whatever the follower holds, it ends with exactly the leader's log."""
    nt = net()
    preset_peer(nt, 1, FIGURE7_LEADER, term=8)
    preset_peer(nt, 2, follower, term=8)
    preset_peer(nt, 3, FIGURE7_LEADER, term=8)  # a voter so that 1 can win
    nt.campaign(1)
    assert nt[1].state == StateType.LEADER
    nt.propose(1, b"")
    assert [(e.term, e.index) for e in nt[2].log()] == [(e.term, e.index) for e in nt[1].log()]


def test_leader_only_commits_its_own_term_by_counting() -> None:
    """§5.4.2 / Figure 8: an old-term entry on a majority is not committed by counting."""
    nt = net(3, max_size_per_msg=1)  # one entry per MsgApp
    preset_peer(nt, 1, [1, 2], term=3)
    preset_peer(nt, 2, [1], term=3)
    preset_peer(nt, 3, [1], term=3)
    nt.cut(1, 3)
    # Let the term-2 entry through to 2, but no entry of the new term 4 once 2 has it
    # (the first probe must arrive, to be rejected and so find where 2's log ends).
    nt.msg_hook = lambda m: not (any(e.term == 4 for e in m.entries) and len(nt[2].log()) >= 2)
    nt.campaign(1)
    r = nt[1].raft
    assert r.state == StateType.LEADER and r.term == 4
    assert [e.term for e in nt[2].log()] == [1, 2]  # 1 and 2 (a majority) hold entry 2
    assert r.trk.progress[2].match == 2
    assert r.raft_log.committed == 0  # ... but it is of term 2: not committed
    nt.recover()
    nt.propose(1, b"now")
    assert r.raft_log.committed == 4  # committed together with entries of term 4


# --- randomized runs checking the safety properties of Figure 3 -----------------------


PROPERTIES = (
    "election_safety",
    "leader_append_only",
    "log_matching",
    "leader_completeness",
    "state_machine_safety",
    "linearizable_reads",
)


class History:
    """Observations across a randomized run, checked against Figure 3's properties after
    every step.  Violations are recorded per property (not raised), so that one test per
    property can report on the same runs; `checks` counts how often each was exercised."""

    def __init__(self) -> None:
        self.leader_of_term: dict[int, int] = {}
        self.leader_logs: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.committed: dict[int, int] = {}  # index -> term, once committed anywhere
        self.violations: dict[str, list[str]] = {p: [] for p in PROPERTIES}
        self.checks: dict[str, int] = dict.fromkeys(PROPERTIES, 0)
        # ReadIndex: the largest commit index known anywhere when each read was issued.
        self.read_floor: dict[bytes, int] = {}
        self.reads_seen: dict[int, int] = {}  # node -> how many of its ReadStates checked

    def _check(self, prop: str, ok: bool, what: str) -> None:
        self.checks[prop] += 1
        if not ok:
            self.violations[prop].append(what)

    def observe(self, nt: Network) -> None:
        for i, p in nt.peers.items():
            r = p.raft
            log = [(e.index, e.term) for e in p.log()]
            if r.state == StateType.LEADER:
                # Election safety: at most one leader per term.
                first = self.leader_of_term.setdefault(r.term, i)
                self._check("election_safety", first == i, f"{first} and {i} lead {r.term}")
                # Leader append-only: its log only grows while it leads in this term.
                # (Compaction may drop a prefix; what is still held must be unchanged.)
                prev = self.leader_logs.get((i, r.term))
                if prev is not None:
                    kept = [x for x in prev if x[0] >= r.raft_log.first_index()]
                    self._check("leader_append_only", log[: len(kept)] == kept, f"{i}@{r.term}")
                self.leader_logs[(i, r.term)] = log
                # Leader completeness: every entry committed in an earlier term is present.
                have = dict(log)
                for idx, t in self.committed.items():
                    if t < r.term and idx >= r.raft_log.first_index():
                        self._check(
                            "leader_completeness", have.get(idx) == t, f"{i} lacks {t}/{idx}"
                        )
            for e in p.log():
                if e.index <= r.raft_log.committed:
                    old = self.committed.setdefault(e.index, e.term)
                    self._check(
                        "state_machine_safety", old == e.term, f"{old}/{e.index} vs {e.term}"
                    )
        # Linearizable reads: a read index covers every entry committed before the read
        # was issued (anywhere), so the read observes every acknowledged write.
        for i, p in nt.peers.items():
            for rs in p.read_states[self.reads_seen.get(i, 0) :]:
                floor = self.read_floor[rs.request_ctx]
                self._check("linearizable_reads", rs.index >= floor, f"{rs} < {floor}")
            self.reads_seen[i] = len(p.read_states)
        # Log matching: same index and term => identical up to there.
        peers = list(nt.peers.values())
        for a in peers:
            la = {e.index: e.term for e in a.log()}
            for b in peers:
                lb = {e.index: e.term for e in b.log()}
                common = [i for i in la if lb.get(i) == la[i]]
                if common:
                    top = max(common)
                    lo = max(a.raft.raft_log.first_index(), b.raft.raft_log.first_index())
                    same = all(la[i] == lb[i] for i in range(lo, top + 1))
                    self._check("log_matching", same, f"{a.raft.id} vs {b.raft.id} at {top}")
        # State machine safety: nodes apply the same entry at each index.
        # (Compared by index: a node that installed a snapshot skipped the entries in it.)
        applied = [{e.index: e.term for e in p.applied} for p in peers]
        for x in applied:
            for y in applied:
                same = all(x[i] == y[i] for i in x.keys() & y.keys())
                self._check("state_machine_safety", same, "applied sequences differ")


def chaos(
    seed: int,
    steps: int = 250,
    compaction: bool = False,
    membership: bool = False,
    **kw: object,
) -> tuple[Network, History]:
    rng = random.Random(seed)
    nt = Network([1, 2, 3, 4, 5], seed=seed, **kw)  # type: ignore[arg-type]
    if membership:
        nt.add_peer(6, MemoryStorage())  # starts outside the configuration, empty
    h = History()
    for step in range(steps):
        roll = rng.random()
        if roll < 0.1:
            nt.recover()
            if rng.random() < 0.5:
                # Often cut off the leader, to force elections with divergent logs.
                nt.isolate(nt.leader() or rng.choice(sorted(nt.peers)))
            for _ in range(rng.randrange(3)):
                a, b = rng.sample(sorted(nt.peers), 2)
                nt.cut(a, b)
            if rng.random() < 0.3:
                for a in nt.peers:
                    for b in nt.peers:
                        if a != b:
                            nt.drop(a, b, 0.2)
        elif roll < 0.4:
            leader = nt.leader()
            target = leader or rng.choice(sorted(nt.peers))
            try:
                nt.propose(target, b"v%d" % step)
            except Exception as e:  # noqa: BLE001 - only ProposalDropped is expected
                assert type(e).__name__ == "ProposalDropped"
        elif membership and roll < 0.43:
            # Add 6 as a learner, promote it, or remove it again (one change at a time).
            leader = nt.leader()
            kind = rng.choice(
                [
                    ConfChangeType.ADD_LEARNER_NODE,
                    ConfChangeType.ADD_NODE,
                    ConfChangeType.REMOVE_NODE,
                ]
            )
            if leader:
                with contextlib.suppress(ProposalDropped):
                    nt.propose_conf_change(leader, ConfChange(kind, 6))
        elif roll < 0.5:
            i = rng.choice(sorted(nt.peers))
            ctx = b"read%d" % step
            h.read_floor[ctx] = max(p.raft.raft_log.committed for p in nt.peers.values())
            nt.read_index(i, ctx)
        elif roll < 0.52:
            leader = nt.leader()
            if leader:
                nt.transfer_leader(leader, rng.choice(sorted(nt.peers)))
        elif compaction and roll < 0.57:
            # Snapshot and compact a random node's log up to what it applied, so that
            # lagging followers must be caught up with snapshots.
            i = rng.choice(sorted(nt.peers))
            applied = nt[i].raft.raft_log.applied
            if applied > nt[i].storage.snapshot().metadata.index:
                compact(nt, i, applied)
        else:
            nt.tick_all()
        h.observe(nt)
    return nt, h


RUN_MODES = {
    "plain": PLAIN,
    "prevote_checkquorum": {"pre_vote": True, "check_quorum": True},
    "small_window": {"pre_vote": True, "max_inflight_msgs": 2, "max_size_per_msg": 40},
}


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, int], History]:
    """Randomized runs (partitions, drops, proposals; odd seeds compact logs, seeds >= 2
    also add, promote and remove a sixth member), shared by the property tests."""
    out = {}
    for mode, kw in RUN_MODES.items():
        for seed in range(4):
            _, h = chaos(seed, compaction=seed % 2 == 1, membership=seed >= 2, **kw)
            assert h.leader_of_term and h.committed  # the run did something
            out[(mode, seed)] = h
    return out


@pytest.mark.parametrize("prop", PROPERTIES)
def test_figure3_property_holds_in_randomized_runs(
    prop: str, runs: dict[tuple[str, int], History]
) -> None:
    """Election safety, leader append-only, log matching, leader completeness and state
    machine safety (Figure 3), checked after every step of every run."""
    assert sum(h.checks[prop] for h in runs.values()) > 0
    bad = {key: h.violations[prop][:3] for key, h in runs.items() if h.violations[prop]}
    assert bad == {}


def test_the_checker_is_not_vacuous() -> None:
    """Fabricated violations (state forced by hand) are reported."""
    nt = net()
    nt.campaign(1)
    h = History()
    h.observe(nt)
    assert not any(h.violations.values())
    r2 = nt[2].raft
    r2.state = StateType.LEADER  # a second leader in the same term
    nt[3].applied.append(Entry(term=99, index=nt[1].applied[-1].index))
    h.read_floor[b"stale"] = nt[1].raft.raft_log.committed
    nt[3].read_states.append(ReadState(index=1, request_ctx=b"stale"))
    h.observe(nt)
    assert h.violations["election_safety"] and h.violations["state_machine_safety"]
    assert h.violations["linearizable_reads"]


def test_randomized_runs_elect_several_leaders(runs: dict[tuple[str, int], History]) -> None:
    assert max(len(h.leader_of_term) for h in runs.values()) >= 3


def test_liveness_after_partitions_heal() -> None:
    nt, _ = chaos(7, steps=150, **PLAIN)
    nt.recover()
    nt.tick_all(40)
    leader = nt.leader()
    assert leader
    nt.propose(leader, b"final")
    assert all(b"final" in p.applied_data() for p in nt.peers.values())

"""The Raft state machine.

Everything enters through `step(m)`; ticks become local HUP/BEAT/CHECK_QUORUM messages.
`step()` first applies the role-independent term rules, then calls the role's step
function, which `become_*` swaps in (`self._step`, `self._tick`).  Output goes to an
outbox: `msgs` (may leave at once) and `msgs_after_append` (responses that acknowledge
durable state, released only after the Ready that carries that state was persisted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from typing import Any

from . import confchange
from .config import RaftConfig
from .describe import describe_conf_change, message_type_name
from .errors import (
    Compacted,
    ConfigInvalid,
    ProposalDropped,
    SnapshotTemporarilyUnavailable,
    Unavailable,
)
from .log import RaftLog
from .quorum import VoteResult
from .read_only import ReadOnly
from .status import ProgressState
from .storage import LogStorage
from .tracker import Progress, ProgressTracker, TrackerConfig
from .types import (
    LOCAL_MESSAGES,
    RESPONSE_AFTER_PERSIST,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
)

MT = MessageType
NONE = 0

# Context of a VOTE sent because of a leadership transfer: it overrides the lease check.
CAMPAIGN_TRANSFER = b"CampaignTransfer"

_VOTE_TYPES = frozenset({MT.VOTE, MT.VOTE_RESP, MT.PRE_VOTE, MT.PRE_VOTE_RESP})
_TERMLESS = frozenset({MT.PROP, MT.READ_INDEX})

# Bound on READ_INDEX requests parked until the new leader commits an entry of its term.
MAX_PENDING_READ_INDEX_MESSAGES = 4096


class CampaignType(Enum):
    PRE_ELECTION = "pre-election"
    ELECTION = "election"
    TRANSFER = "transfer"


def vote_resp_type(t: MessageType) -> MessageType:
    return MT.VOTE_RESP if t == MT.VOTE else MT.PRE_VOTE_RESP


def payload_size(ents: tuple[Entry, ...] | list[Entry]) -> int:
    return sum(e.payload_size() for e in ents)


class Raft:
    """One member's Raft state.  Driven only through step() and tick(); see RawNode.

    Invariants: state == LEADER iff lead == id; a vote is only ever cast once per term
    (vote changes only together with term, or from NONE); the leader's own Progress is
    in REPLICATE; msgs never holds a message to ourselves (those wait in
    msgs_after_append until the Ready that persists them is advanced).
    """

    def __init__(
        self,
        config: RaftConfig,
        storage: LogStorage,
        logger: Callable[[str], None] | None = None,
    ) -> None:
        config.validate()
        self.id = config.id
        self._logger = logger
        self.raft_log = RaftLog(storage, config.max_committed_size_per_ready)
        hs, cs = storage.initial_state()
        self.max_msg_size = config.max_size_per_msg
        self.max_uncommitted_size = config.max_uncommitted_entries_size
        self.trk = ProgressTracker(config.max_inflight_msgs, config.max_inflight_bytes)
        self.term = 0
        self.vote = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.lead = NONE
        self.lead_transferee = NONE
        # Index of the latest conf change proposed; only one may be pending (> applied).
        self.pending_conf_index = 0
        # Payload bytes of entries appended as leader and not yet applied (bounded).
        self.uncommitted_size = 0
        self.msgs: list[Message] = []
        self.msgs_after_append: list[Message] = []
        self.read_states: list[ReadState] = []
        self.pending_read_index_messages: list[Message] = []
        self.check_quorum = config.check_quorum
        self.pre_vote = config.pre_vote
        self.read_only = ReadOnly(config.read_only_lease_based)
        self.lease_based = config.read_only_lease_based
        self.disable_proposal_forwarding = config.disable_proposal_forwarding
        self.heartbeat_timeout = config.heartbeat_tick
        self.election_timeout = config.election_tick
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.rng = config.rng
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        cfg, prs = confchange.restore(
            cs, self.raft_log.last_index(), config.max_inflight_msgs, config.max_inflight_bytes
        )
        self._switch_to_config(cfg, prs)
        if not hs.is_empty():
            self._load_state(hs)
        if config.applied > 0:
            if config.applied > self.raft_log.committed:
                raise ConfigInvalid(
                    f"applied {config.applied} is beyond the commit index "
                    f"{self.raft_log.committed} in storage"
                )
            self.raft_log.applied_to(config.applied)
        self.become_follower(self.term, NONE)
        self._log(
            f"newRaft {self.id} [peers: [{','.join(map(str, self.trk.voter_nodes()))}], "
            f"term: {self.term}, commit: {self.raft_log.committed}, "
            f"applied: {self.raft_log.applied}, lastindex: {self.raft_log.last_index()}, "
            f"lastterm: {self.raft_log.last_term()}]"
        )

    # --- small helpers ------------------------------------------------------

    def _log(self, s: str) -> None:
        if self._logger is not None:
            self._logger(s)

    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, raft_state=self.state)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def _load_state(self, hs: HardState) -> None:
        if not self.raft_log.committed <= hs.commit <= self.raft_log.last_index():
            raise AssertionError(
                f"{self.id} state.commit {hs.commit} is out of range "
                f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
            )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def promotable(self) -> bool:
        """May this node campaign?  Not a learner, not removed, no snapshot pending."""
        pr = self.trk.progress.get(self.id)
        return (
            pr is not None
            and not pr.is_learner
            and not self.raft_log.has_next_or_in_progress_snapshot()
        )

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _reset_randomized_election_timeout(self) -> None:
        # Uniform in [election_timeout, 2*election_timeout): splits votes rarely.
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )

    # --- the outbox ---------------------------------------------------------

    def send(self, m: Message) -> None:
        """Queue m.  Stamps from_ and (for non-vote messages) our term; checks the rules."""
        frm = m.from_ or self.id
        term = m.term
        if m.type in _VOTE_TYPES:
            # Vote messages carry the term they are about, which is not always ours
            # (a pre-vote is for term+1; a granted response echoes the request's term).
            assert term != 0, f"term should be set when sending {m.type.name}"
        else:
            assert term == 0, f"term should not be set when sending {m.type.name} ({term})"
            # PROP and READ_INDEX forwarded by a follower carry no term: they are local
            # requests relayed to the leader and are valid regardless of term.
            if m.type not in _TERMLESS:
                term = self.term
        assert m.type not in LOCAL_MESSAGES, m.type
        if frm != m.from_ or term != m.term:
            # Positional construction: dataclasses.replace is several times slower, and
            # this runs for every message.
            m = Message(
                m.type,
                m.to,
                frm,
                term,
                m.log_term,
                m.index,
                m.entries,
                m.commit,
                m.snapshot,
                m.reject,
                m.reject_hint,
                m.context,
            )
        if m.type in RESPONSE_AFTER_PERSIST:
            self.msgs_after_append.append(m)
        else:
            assert m.to != self.id, f"message {m.type.name} to self"
            self.msgs.append(m)

    # --- ticks --------------------------------------------------------------

    def tick(self) -> None:
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(type=MT.HUP, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(type=MT.CHECK_QUORUM, from_=self.id))
            # A transfer that did not finish within an election timeout is abandoned.
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self._log(f"{self.id} [term {self.term}] abort transfer to {self.lead_transferee}")
                self.abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(type=MT.BEAT, from_=self.id))

    # --- role changes -------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        for i, pr in self.trk.progress.items():
            pr.match = last if i == self.id else 0
            pr.next = last + 1
            pr.state = ProgressState.PROBE
            pr.pending_snapshot = 0
            pr.msg_app_flow_paused = False
            pr.inflights.reset()
            pr.recent_active = i == self.id
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        # Read requests belong to a leadership: any role change drops them (their
        # clients time out and retry), which also keeps both queues bounded.
        self.read_only = ReadOnly(self.lease_based)
        self.pending_read_index_messages = []

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER
        self._log(f"{self.id} became follower at term {self.term}")

    def become_candidate(self) -> None:
        assert self.state != StateType.LEADER, "invalid transition [leader -> candidate]"
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE
        self._log(f"{self.id} became candidate at term {self.term}")

    def become_pre_candidate(self) -> None:
        assert self.state != StateType.LEADER, "invalid transition [leader -> pre-candidate]"
        # A pre-candidate does not bump its term or change its vote: a failed pre-vote
        # leaves the rest of the cluster undisturbed.
        self._step = self._step_candidate
        self.trk.reset_votes()
        self._tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE
        self._log(f"{self.id} became pre-candidate at term {self.term}")

    def become_leader(self) -> None:
        assert self.state != StateType.FOLLOWER, "invalid transition [follower -> leader]"
        self._step = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        me = self.trk.progress[self.id]
        me.become_replicate()
        me.recent_active = True
        # Conservatively treat every entry we hold as a possibly pending conf change.
        self.pending_conf_index = self.raft_log.last_index()
        # The empty entry of our term lets us commit (and learn the commit of) earlier ones.
        ok = self._append_entry([Entry(term=0, index=0)])
        assert ok, "empty entry was dropped"
        self._log(f"{self.id} became leader at term {self.term}")

    # --- elections ------------------------------------------------------------

    def _hup(self, t: CampaignType) -> None:
        if self.state == StateType.LEADER:
            self._log(f"{self.id} ignoring MsgHup because already leader")
            return
        if not self.promotable():
            self._log(f"{self.id} is unpromotable and can not campaign")
            return
        if self._has_unapplied_conf_change():
            self._log(
                f"{self.id} cannot campaign at term {self.term} since there are still "
                "pending configuration changes to apply"
            )
            return
        self._log(f"{self.id} is starting a new election at term {self.term}")
        self._campaign(t)

    def _has_unapplied_conf_change(self) -> bool:
        rl = self.raft_log
        if rl.applied >= rl.committed:
            return False
        lo = rl.applied + 1
        hi = rl.committed + 1
        # Bounded scan: page through the committed but unapplied entries.
        while lo < hi:
            page = rl.slice(lo, hi, self.max_msg_size)
            if any(e.type == EntryType.CONF_CHANGE for e in page):
                return True
            lo = page[-1].index + 1
        return False

    def _campaign(self, t: CampaignType) -> None:
        if not self.promotable():
            self._log(f"{self.id} is unpromotable; campaign() should have been called")
            return
        if t == CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = MT.PRE_VOTE
            term = self.term + 1  # the term we would campaign in
        else:
            self.become_candidate()
            vote_msg = MT.VOTE
            term = self.term
        ctx = CAMPAIGN_TRANSFER if t == CampaignType.TRANSFER else b""
        for nid in self.trk.voter_nodes():
            if nid == self.id:
                # Our own vote counts only once our term and vote are durable.
                self.send(Message(type=vote_resp_type(vote_msg), to=nid, term=term))
                continue
            self._log(
                f"{self.id} [logterm: {self.raft_log.last_term()}, index: "
                f"{self.raft_log.last_index()}] sent {message_type_name(vote_msg)} request to {nid} "
                f"at term {self.term}"
            )
            self.send(
                Message(
                    type=vote_msg,
                    to=nid,
                    term=term,
                    index=self.raft_log.last_index(),
                    log_term=self.raft_log.last_term(),
                    context=ctx,
                )
            )

    def _poll(self, nid: int, t: MessageType, granted: bool) -> tuple[int, int, VoteResult]:
        verb = "" if granted else "rejection "
        self._log(f"{self.id} received {message_type_name(t)} {verb}from {nid} at term {self.term}")
        self.trk.record_vote(nid, granted)
        return self.trk.tally_votes()

    # --- step -----------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Feed one message (local or from a peer) into the state machine."""
        if m.term == 0:
            pass  # local message (or a forwarded proposal / read request)
        elif m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # We heard from a leader within the election timeout: a node that
                    # cannot hear it must not disrupt it (the "lease").
                    self._log(
                        f"{self.id} [logterm: {self.raft_log.last_term()}, index: "
                        f"{self.raft_log.last_index()}, vote: {self.vote}] ignored "
                        f"{message_type_name(m.type)} from {m.from_} [logterm: {m.log_term}, index: "
                        f"{m.index}] at term {self.term}: lease is not expired (remaining "
                        f"ticks: {self.election_timeout - self.election_elapsed})"
                    )
                    return
            if m.type == MT.PRE_VOTE:
                pass  # never change our term in response to a pre-vote
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                # Granted pre-votes carry the future term we asked about; if we win we
                # increase our term then.
                pass
            else:
                self._log(
                    f"{self.id} [term: {self.term}] received a {message_type_name(m.type)} message "
                    f"with higher term from {m.from_} [term: {m.term}]"
                )
                if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                    self.become_follower(m.term, m.from_)
                else:
                    self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A partitioned old leader keeps sending; tell it the new term so it
                # steps down.  (With pre-vote/check-quorum we would otherwise never
                # learn of it, and it might be stuck.)
                self.send(Message(type=MT.APP_RESP, to=m.from_))
            elif m.type == MT.PRE_VOTE:
                self._log(
                    f"{self.id} [logterm: {self.raft_log.last_term()}, index: "
                    f"{self.raft_log.last_index()}, vote: {self.vote}] rejected "
                    f"{message_type_name(m.type)} from {m.from_} [logterm: {m.log_term}, index: "
                    f"{m.index}] at term {self.term}"
                )
                self.send(Message(type=MT.PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True))
            else:
                self._log(
                    f"{self.id} [term: {self.term}] ignored a {message_type_name(m.type)} message "
                    f"with lower term from {m.from_} [term: {m.term}]"
                )
            return

        if m.type == MT.HUP:
            self._hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step(m)
        assert (self.state == StateType.LEADER) == (self.lead == self.id), (self.state, self.lead)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            # A pre-vote for a future term may be granted even if we voted in this one.
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        verb = (
            "cast" if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term) else "rejected"
        )
        self._log(
            f"{self.id} [logterm: {self.raft_log.last_term()}, index: "
            f"{self.raft_log.last_index()}, vote: {self.vote}] {verb} {message_type_name(m.type)} for "
            f"{m.from_} [logterm: {m.log_term}, index: {m.index}] at term {self.term}"
        )
        if verb == "cast":
            self.send(Message(type=vote_resp_type(m.type), to=m.from_, term=m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self.send(Message(type=vote_resp_type(m.type), to=m.from_, term=self.term, reject=True))

    # --- leader -------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        if m.type == MT.BEAT:
            self._bcast_heartbeat()
            return
        if m.type == MT.CHECK_QUORUM:
            if not self.trk.quorum_active():
                self._log(f"{self.id} stepped down to follower since quorum is not active")
                self.become_follower(self.term, NONE)
            # Activity is measured afresh over each election timeout.
            for i, other in self.trk.progress.items():
                if i != self.id:
                    other.recent_active = False
            return
        if m.type == MT.PROP:
            self._leader_propose(m)
            return
        if m.type == MT.READ_INDEX:
            self._leader_read_index(m)
            return

        pr = self.trk.progress.get(m.from_)
        if pr is None:
            self._log(f"{self.id} no progress available for {m.from_}")
            return
        if m.type == MT.APP_RESP:
            self._handle_append_response(m)
        elif m.type == MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.msg_app_flow_paused = False
            if pr.state == ProgressState.REPLICATE and pr.inflights.full():
                # The follower is alive but the window is full: acknowledgements were
                # probably lost.  Free one slot so that an append goes out; if the
                # follower lacks entries it rejects it and we fall back to probing.
                pr.inflights.free_first_one()
            if pr.match < self.raft_log.last_index() or pr.state == ProgressState.PROBE:
                self._send_append(m.from_)
            if self.lease_based or not m.context:
                return
            acks = self.read_only.recv_ack(m.from_, m.context)
            if acks is None or self.trk.vote_result(acks) != VoteResult.WON:
                return
            for rs in self.read_only.advance(m.context):
                resp = self._response_to_read_index_req(rs.req, rs.index)
                if resp is not None:
                    self.send(resp)
        elif m.type == MT.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if not m.reject:
                pr.become_probe()
                self._log(f"{self.id} snapshot succeeded, resumed sending replication to {m.from_}")
            else:
                # The snapshot was not applied: send a fresh one when probing finds a gap.
                pr.pending_snapshot = 0
                pr.become_probe()
                self._log(f"{self.id} snapshot failed, resumed sending replication to {m.from_}")
            # Wait for a heartbeat response before probing, so the snapshot (or its
            # failure) has a chance to settle first.
            pr.msg_app_flow_paused = True
        elif m.type == MT.UNREACHABLE:
            # Appends in flight were probably lost: probe again instead of pipelining.
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            self._log(f"{self.id} failed to send message to {m.from_} because it is unreachable")
        elif m.type == MT.TRANSFER_LEADER:
            self._leader_transfer(m)

    def _leader_propose(self, m: Message) -> None:
        assert m.entries, f"{self.id} stepped empty MsgProp"
        if self.id not in self.trk.progress:
            raise ProposalDropped("leader was removed from the configuration")
        if self.lead_transferee != NONE:
            self._log(
                f"{self.id} [term {self.term}] transfer leadership to {self.lead_transferee} "
                "is in progress; dropping proposal"
            )
            raise ProposalDropped("leadership transfer in progress")
        ents = list(m.entries)
        for i, e in enumerate(ents):
            if e.type != EntryType.CONF_CHANGE:
                continue
            if self.pending_conf_index > self.raft_log.applied:
                # One change at a time: the next one must see the previous one applied.
                self._log(
                    f"{self.id} ignoring conf change {describe_cc(e.data)} at config "
                    f"{self.trk.config}: possible unapplied conf change at index "
                    f"{self.pending_conf_index} (applied to {self.raft_log.applied})"
                )
                ents[i] = Entry(term=0, index=0, type=EntryType.NORMAL)
            else:
                self.pending_conf_index = self.raft_log.last_index() + i + 1
        if not self._append_entry(ents):
            raise ProposalDropped("uncommitted entries size limit reached")
        self._bcast_append()

    def _leader_read_index(self, m: Message) -> None:
        if self.trk.is_singleton():
            resp = self._response_to_read_index_req(m, self.raft_log.committed)
            if resp is not None:
                self.send(resp)
            return
        if not self._committed_entry_in_current_term():
            # Our commit index may lag the true one until our own term's entry commits.
            if len(self.pending_read_index_messages) < MAX_PENDING_READ_INDEX_MESSAGES:
                self.pending_read_index_messages.append(m)
            return
        self._send_read_index_response(m)

    def _handle_append_response(self, m: Message) -> None:
        pr = self.trk.progress[m.from_]
        pr.recent_active = True
        if m.reject:
            self._log(
                f"{self.id} received MsgAppResp(rejected, hint: (index {m.reject_hint}, term "
                f"{m.log_term})) from {m.from_} for index {m.index}"
            )
            next_probe = m.reject_hint
            if m.log_term > 0:
                # Skip every entry whose term the follower cannot have (etcd's
                # findConflictByTerm on the leader side).
                next_probe, _ = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                self._log(f"{self.id} decreased progress of {m.from_} to [{pr}]")
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_)
            return
        old_paused = pr.is_paused()
        if not (
            pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE)
        ):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.raft_log.first_index():
            # The follower caught up from the snapshot (or from entries we still have).
            self._log(
                f"{self.id} recovered from needing snapshot, resumed sending replication "
                f"to {m.from_} [{pr}]"
            )
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._release_pending_read_index_messages()
            self._bcast_append()
        elif old_paused and m.from_ != self.id:
            self._send_append(m.from_)
        if m.from_ != self.id:
            # The window may have opened: send as many appends as it allows now.
            for _ in range(self.trk.max_inflight):
                if not self._maybe_send_append(m.from_, send_if_empty=False):
                    break
        if m.from_ == self.lead_transferee and pr.match == self.raft_log.last_index():
            self._log(f"{self.id} sent MsgTimeoutNow to {m.from_} after received MsgAppResp")
            self._send_timeout_now(m.from_)

    def _leader_transfer(self, m: Message) -> None:
        pr = self.trk.progress[m.from_]
        if pr.is_learner:
            self._log(f"{self.id} is learner. Ignored transferring leadership")
            return
        transferee = m.from_
        last = self.lead_transferee
        if last != NONE:
            if last == transferee:
                self._log(
                    f"{self.id} [term {self.term}] transfer leadership to {transferee} is in "
                    "progress, ignores request to same node"
                )
                return
            self.abort_leader_transfer()
            self._log(
                f"{self.id} [term {self.term}] abort previous transferring leadership to {last}"
            )
        if transferee == self.id:
            self._log(f"{self.id} is already leader. Ignored transferring leadership to self")
            return
        self._log(f"{self.id} [term {self.term}] starts to transfer leadership to {transferee}")
        # The transfer must finish within one election timeout or it is aborted.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self._send_timeout_now(transferee)
            self._log(
                f"{self.id} sends MsgTimeoutNow to {transferee} immediately as {transferee} "
                "already has up-to-date log"
            )
        else:
            self._send_append(transferee)

    # --- candidate / follower ---------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        my_resp = MT.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type == MT.PROP:
            self._log(f"{self.id} no leader at term {self.term}; dropping proposal")
            raise ProposalDropped("no leader")
        if m.type == MT.APP:
            self.become_follower(m.term, m.from_)  # always m.term == self.term
            self._handle_append_entries(m)
        elif m.type == MT.HEARTBEAT:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif m.type == MT.SNAP:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif m.type == my_resp:
            gr, rj, res = self._poll(m.from_, m.type, not m.reject)
            self._log(
                f"{self.id} has received {gr} {message_type_name(m.type)} votes and {rj} vote rejections"
            )
            if res == VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self._campaign(CampaignType.ELECTION)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif res == VoteResult.LOST:
                # A pre-candidate that lost keeps its term; a candidate stays in its term.
                self.become_follower(self.term, NONE)
        elif m.type == MT.TIMEOUT_NOW:
            self._log(f"{self.id} [term {self.term} state {self.state.name}] ignored MsgTimeoutNow")

    def _step_follower(self, m: Message) -> None:
        if m.type == MT.PROP:
            if self.lead == NONE:
                self._log(f"{self.id} no leader at term {self.term}; dropping proposal")
                raise ProposalDropped("no leader")
            if self.disable_proposal_forwarding:
                self._log(f"{self.id} not forwarding to leader {self.lead}; dropping proposal")
                raise ProposalDropped("proposal forwarding disabled")
            self.send(_replace(m, to=self.lead, from_=self.id, term=0))
        elif m.type == MT.APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append_entries(m)
        elif m.type == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif m.type == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif m.type == MT.TRANSFER_LEADER:
            if self.lead == NONE:
                self._log(f"{self.id} no leader at term {self.term}; dropping leader transfer msg")
                return
            if self.lead == m.from_:
                return  # stale views on both sides, as for READ_INDEX: never send to oneself
            self.send(_replace(m, to=self.lead, term=0))
        elif m.type == MT.TIMEOUT_NOW:
            self._log(
                f"{self.id} [term {self.term}] received MsgTimeoutNow from {m.from_} and starts "
                "an election to get leadership"
            )
            # Transfers skip pre-vote: the leader asked us, so nobody is disrupted.
            self._hup(CampaignType.TRANSFER)
        elif m.type == MT.READ_INDEX:
            if self.lead == NONE:
                self._log(f"{self.id} no leader at term {self.term}; dropping index reading msg")
                return
            if self.lead == m.from_:
                # The requester took us for the leader and we take it for the leader: stale
                # views on both sides. Sending it back would be a message to itself; drop it,
                # the requester retries once it knows the leader.
                self._log(f"{self.id} not forwarding index reading msg back to {m.from_}")
                return
            self.send(_replace(m, to=self.lead, term=0))
        elif m.type == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(index=m.index, request_ctx=m.context))

    def _handle_append_entries(self, m: Message) -> None:
        if m.index < self.raft_log.committed:
            self.send(Message(type=MT.APP_RESP, to=m.from_, index=self.raft_log.committed))
            return
        mlast, ok = self.raft_log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if ok:
            self.send(Message(type=MT.APP_RESP, to=m.from_, index=mlast))
            return
        # Reject, with a hint: the last entry we have at or below m.index whose term is
        # <= m.log_term.  The leader can then skip the rest of the diverging terms.
        hint_index = min(m.index, self.raft_log.last_index())
        hint_index, hint_term = self.raft_log.find_conflict_by_term(hint_index, m.log_term)
        self._log(
            f"{self.id} [logterm: {self.raft_log.zero_term_on_out_of_range(m.index)}, index: "
            f"{m.index}] rejected MsgApp [logterm: {m.log_term}, index: {m.index}] from {m.from_}"
        )
        self.send(
            Message(
                type=MT.APP_RESP,
                to=m.from_,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(m.commit)
        self.send(Message(type=MT.HEARTBEAT_RESP, to=m.from_, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        meta = m.snapshot.metadata
        if self.restore(m.snapshot):
            self._log(
                f"{self.id} [commit: {self.raft_log.committed}] restored snapshot [index: "
                f"{meta.index}, term: {meta.term}]"
            )
            self.send(Message(type=MT.APP_RESP, to=m.from_, index=self.raft_log.last_index()))
        else:
            self._log(
                f"{self.id} [commit: {self.raft_log.committed}] ignored snapshot [index: "
                f"{meta.index}, term: {meta.term}]"
            )
            self.send(Message(type=MT.APP_RESP, to=m.from_, index=self.raft_log.committed))

    def restore(self, s: Snapshot) -> bool:
        """Install a snapshot from the leader; False if it is stale or not for us."""
        meta = s.metadata
        if meta.index <= self.raft_log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Only a follower receives snapshots; being here is a bug elsewhere, so
            # fall back to a safe state rather than install it.
            self._log(f"{self.id} attempted to restore snapshot as leader; should never happen")
            self.become_follower(self.term + 1, NONE)
            return False
        cs = meta.conf_state
        if self.id not in cs.voters and self.id not in cs.learners:
            self._log(f"{self.id} attempted to restore snapshot but it is not in the ConfState")
            return False
        if self.raft_log.match_term(meta.index, meta.term):
            # We already have the snapshot's last entry: just move the commit index.
            self._log(
                f"{self.id} [commit: {self.raft_log.committed}] fast-forwarded commit to "
                f"snapshot [index: {meta.index}, term: {meta.term}]"
            )
            self.raft_log.commit_to(meta.index)
            return False
        self.raft_log.restore(s)
        cfg, prs = confchange.restore(
            cs, self.raft_log.last_index(), self.trk.max_inflight, self.trk.max_inflight_bytes
        )
        self._switch_to_config(cfg, prs)
        pr = self.trk.progress[self.id]
        pr.maybe_update(pr.next - 1)
        return True

    # --- replication ------------------------------------------------------------------

    def _send_append(self, to: int) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send the next append (or a snapshot) to `to` unless its progress is paused."""
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.raft_log.term(prev_index)
            ents = self.raft_log.entries(pr.next, self.max_msg_size)
        except (Compacted, Unavailable):
            return self._maybe_send_snapshot(to)
        if not ents and not send_if_empty:
            return False
        self.send(
            Message(
                type=MT.APP,
                to=to,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(ents),
                commit=self.raft_log.committed,
            )
        )
        pr.sent_entries(len(ents), payload_size(ents))
        return True

    def _maybe_send_snapshot(self, to: int) -> bool:
        pr = self.trk.progress[to]
        if not pr.recent_active:
            self._log(f"ignore sending snapshot to {to} since it is not recently active")
            return False
        try:
            snap = self.raft_log.snapshot()
        except SnapshotTemporarilyUnavailable:
            self._log(f"{self.id} failed to send snapshot to {to} because snapshot is unavailable")
            return False
        assert not snap.is_empty(), "need non-empty snapshot"
        meta = snap.metadata
        self._log(
            f"{self.id} [firstindex: {self.raft_log.first_index()}, commit: "
            f"{self.raft_log.committed}] sent snapshot[index: {meta.index}, term: {meta.term}] "
            f"to {to} [{pr}]"
        )
        pr.become_snapshot(meta.index)
        self.send(Message(type=MT.SNAP, to=to, snapshot=snap))
        return True

    def _bcast_append(self) -> None:
        for nid in sorted(self.trk.progress):
            if nid != self.id:
                self._send_append(nid)

    def _send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Never tell a follower to commit beyond what it is known to hold.
        commit = min(self.trk.progress[to].match, self.raft_log.committed)
        self.send(Message(type=MT.HEARTBEAT, to=to, commit=commit, context=ctx))

    def _bcast_heartbeat(self) -> None:
        self._bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    def _bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        for nid in sorted(self.trk.progress):
            if nid != self.id:
                self._send_heartbeat(nid, ctx)

    def _maybe_commit(self) -> bool:
        return self.raft_log.maybe_commit(self.trk.committed(), self.term)

    def _append_entry(self, es: list[Entry]) -> bool:
        li = self.raft_log.last_index()
        stamped = [
            Entry(term=self.term, index=li + 1 + i, type=e.type, data=e.data)
            for i, e in enumerate(es)
        ]
        if not self._increase_uncommitted_size(stamped):
            self._log(
                f"{self.id} appending new entries to log would exceed uncommitted entry size "
                "limit; dropping proposal"
            )
            return False
        li = self.raft_log.append(stamped)
        # Our own acknowledgement, released (stepped) only once the entries are durable.
        self.send(Message(type=MT.APP_RESP, to=self.id, index=li))
        return True

    def _increase_uncommitted_size(self, ents: list[Entry]) -> bool:
        s = payload_size(ents)
        # Always admit at least one proposal when nothing is outstanding, so that an
        # entry bigger than the limit cannot wedge the leader.
        if (
            self.uncommitted_size > 0
            and s > 0
            and self.uncommitted_size + s > self.max_uncommitted_size
        ):
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, s: int) -> None:
        self.uncommitted_size = max(0, self.uncommitted_size - s)

    def _send_timeout_now(self, to: int) -> None:
        self.send(Message(type=MT.TIMEOUT_NOW, to=to))

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    # --- read index -------------------------------------------------------------------

    def _committed_entry_in_current_term(self) -> bool:
        return self.raft_log.zero_term_on_out_of_range(self.raft_log.committed) == self.term

    def _response_to_read_index_req(self, req: Message, read_index: int) -> Message | None:
        if req.from_ in (NONE, self.id):
            self.read_states.append(ReadState(index=read_index, request_ctx=req.context))
            return None
        return Message(type=MT.READ_INDEX_RESP, to=req.from_, index=read_index, context=req.context)

    def _send_read_index_response(self, m: Message) -> None:
        if self.lease_based:
            # Trust that no other leader can exist within our lease (needs check-quorum).
            resp = self._response_to_read_index_req(m, self.raft_log.committed)
            if resp is not None:
                self.send(resp)
            return
        if not self.read_only.add_request(self.raft_log.committed, m):
            return
        self.read_only.recv_ack(self.id, m.context)
        # Heartbeats still in the outbox (not yet handed out in a Ready) are superseded:
        # the round for this newest request also confirms every request queued before it,
        # so reads arriving within one Ready cycle share a single heartbeat round.
        self.msgs = [x for x in self.msgs if x.type != MT.HEARTBEAT]
        self._bcast_heartbeat_with_ctx(m.context)

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in pending:
            self._send_read_index_response(m)

    # --- configuration ------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        cfg, prs = confchange.simple(
            self.trk.config,
            self.trk.progress,
            self.raft_log.last_index(),
            cc,
            self.trk.max_inflight,
            self.trk.max_inflight_bytes,
        )
        return self._switch_to_config(cfg, prs)

    def _switch_to_config(self, cfg: TrackerConfig, prs: dict[int, Progress]) -> ConfState:
        self.trk.config = cfg
        self.trk.progress = prs
        self.trk.check()
        self._log(f"{self.id} switched to configuration {cfg}")
        cs = self.trk.conf_state()
        pr = prs.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == StateType.LEADER:
            # Removed (or demoted) leader: stop leading so the rest elect a new leader.
            self._log(f"{self.id} removed from the voters; stepping down")
            self.become_follower(self.term, NONE)
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self._maybe_commit():
            # The quorum shrank and now commits more.
            self._bcast_append()
        else:
            for nid in sorted(self.trk.progress):
                if nid != self.id:
                    self._maybe_send_append(nid, send_if_empty=False)
        if self.lead_transferee != NONE and self.lead_transferee not in cfg.voters:
            self.abort_leader_transfer()
        return cs


def _replace(m: Message, **kw: Any) -> Message:
    return replace(m, **kw)


def describe_cc(data: bytes) -> str:
    try:
        return describe_conf_change(ConfChange.decode(data))
    except ValueError:
        return "<undecodable>"

"""RawNode: the single-threaded API the application drives, and the Ready hand-off.

See the package docstring for the Ready loop contract.  Between `ready()` and
`advance()` the application may keep calling the other methods; what they produce
appears in the next Ready.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .config import RaftConfig
from .core import Raft
from .errors import ProposalDropped, StepLocalMsg, StepPeerNotFound
from .status import ProgressStatus, Status
from .storage import LogStorage
from .types import (
    LOCAL_MESSAGES,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    SoftState,
)

_RESPONSES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.PRE_VOTE_RESP,
        MessageType.UNREACHABLE,
    }
)


class RawNode:
    def __init__(
        self,
        config: RaftConfig,
        storage: LogStorage,
        logger: Callable[[str], None] | None = None,
    ) -> None:
        self.raft = Raft(config, storage, logger)
        self._prev_soft: SoftState = self.raft.soft_state()
        self._prev_hard: HardState = self.raft.hard_state()
        # What the outstanding Ready handed out, to be acknowledged by advance().
        self._pending: Ready | None = None
        self._steps_on_advance: list[Message] = []

    # --- inputs ---------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        self.raft.step(Message(type=MessageType.HUP))

    def propose(self, data: bytes) -> None:
        """Propose a normal entry.  Raises ProposalDropped if it cannot be appended now."""
        self.raft.step(
            Message(type=MessageType.PROP, from_=self.raft.id, entries=(Entry(0, 0, data=data),))
        )

    def propose_many(self, datas: Sequence[bytes]) -> None:
        """Propose several normal entries as one batch: one append and one MsgApp per
        follower instead of one per entry.  All or none are accepted (ProposalDropped)."""
        if not datas:
            return
        ents = tuple(Entry(0, 0, data=d) for d in datas)
        self.raft.step(Message(type=MessageType.PROP, from_=self.raft.id, entries=ents))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a membership change.  While one is pending (proposed, not yet applied)
        the leader replaces a further one with an empty normal entry instead."""
        e = Entry(0, 0, type=EntryType.CONF_CHANGE, data=cc.encode())
        self.raft.step(Message(type=MessageType.PROP, from_=self.raft.id, entries=(e,)))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        """Feed a message received from a peer.

        Raises StepLocalMsg for a local-only type and StepPeerNotFound for a response from
        a node outside the configuration.  A forwarded proposal the leader cannot accept
        is dropped silently (its proposer times out and retries, as with etcd).
        """
        if m.type in LOCAL_MESSAGES:
            raise StepLocalMsg(f"{m.type.name} cannot come from the network")
        if m.type in _RESPONSES and m.from_ not in self.raft.trk.progress:
            raise StepPeerNotFound(f"{m.type.name} from unknown peer {m.from_}")
        try:
            self.raft.step(m)
        except ProposalDropped:
            if m.type != MessageType.PROP:
                raise

    def read_index(self, ctx: bytes) -> None:
        self.raft.step(Message(type=MessageType.READ_INDEX, context=ctx))

    def transfer_leader(self, to: int) -> None:
        self.raft.step(Message(type=MessageType.TRANSFER_LEADER, from_=to))

    def report_unreachable(self, node_id: int) -> None:
        self.raft.step(Message(type=MessageType.UNREACHABLE, from_=node_id))

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        self.raft.step(Message(type=MessageType.SNAP_STATUS, from_=node_id, reject=failed))

    # --- output ---------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self.raft
        rl = r.raft_log
        # Cheapest checks first: this runs on every turn of the application's loop.
        if r.msgs or r.msgs_after_append or r.read_states:
            return True
        if rl.unstable.offset_in_progress < rl.unstable.offset + len(rl.unstable.entries):
            return True
        if rl.next_unstable_snapshot() is not None or rl.has_next_committed_ents():
            return True
        ps = self._prev_soft
        if r.lead != ps.lead or r.state != ps.raft_state:
            return True
        ph = self._prev_hard
        return (r.term, r.vote, rl.committed) != (ph.term, ph.vote, ph.commit)

    def ready(self) -> Ready:
        """The work to do now.  Call advance() once it is done, before the next ready()."""
        assert self._pending is None, "ready() called twice without advance()"
        r = self.raft
        rl = r.raft_log
        soft = r.soft_state()
        hard = r.hard_state()
        entries = tuple(rl.next_unstable_ents())
        snapshot = rl.next_unstable_snapshot()
        committed = tuple(rl.next_committed_ents())
        hard_changed = hard != self._prev_hard and not hard.is_empty()
        must_sync = (
            bool(entries)
            or snapshot is not None
            or hard.term != self._prev_hard.term
            or hard.vote != self._prev_hard.vote
        )
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard_changed else None,
            read_states=tuple(r.read_states),
            entries=entries,
            snapshot=snapshot,
            committed_entries=committed,
            messages=tuple(r.msgs),
            persisted_messages=tuple(m for m in r.msgs_after_append if m.to != r.id),
            must_sync=must_sync,
        )
        # Accept: everything in rd is now the application's job.
        self._steps_on_advance = [m for m in r.msgs_after_append if m.to == r.id]
        r.msgs = []
        r.msgs_after_append = []
        r.read_states = []
        rl.unstable.accept_in_progress()
        if committed:
            rl.accept_applying(committed[-1].index)
        self._prev_soft = soft
        if hard_changed:
            self._prev_hard = hard
        self._pending = rd
        return rd

    def advance(self) -> None:
        """The last Ready was persisted, sent and applied."""
        rd = self._pending
        assert rd is not None, "advance() without ready()"
        self._pending = None
        r = self.raft
        rl = r.raft_log
        if rd.snapshot is not None:
            rl.stable_snap_to(rd.snapshot.metadata.index)
            # Installing the snapshot replaced the state machine: it is applied.
            rl.applied_to(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            rl.stable_to(last.index, last.term)
        if rd.committed_entries:
            rl.applied_to(rd.committed_entries[-1].index)
            r.reduce_uncommitted_size(sum(e.payload_size() for e in rd.committed_entries))
        # Our own votes and append acknowledgements count now that they are durable.
        steps, self._steps_on_advance = self._steps_on_advance, []
        for m in steps:
            r.step(m)

    def status(self) -> Status:
        r = self.raft
        progress: dict[int, ProgressStatus] = {}
        if r.lead == r.id:
            for i, pr in r.trk.progress.items():
                progress[i] = ProgressStatus(
                    match=pr.match,
                    next=pr.next,
                    state=pr.state,
                    is_learner=pr.is_learner,
                    recent_active=pr.recent_active,
                    inflight=pr.inflights.count(),
                    pending_snapshot=pr.pending_snapshot,
                )
        return Status(
            id=r.id,
            hard_state=r.hard_state(),
            soft_state=r.soft_state(),
            applied=r.raft_log.applied,
            progress=progress,
            lead_transferee=r.lead_transferee,
        )

"""The Raft driver: ticks the pure core, persists each Ready, sends, applies, advances.

This is the only place that calls the `RawNode`, always from the event loop thread. Request
handlers never touch the core: they queue proposals and read requests here and are woken by
the apply loop. Each loop iteration takes *every* proposal queued since the last one, so a
burst of concurrent writes becomes one append, one fsync and one AppendEntries: group commit
falls out of the loop's shape.

Per Ready, in the order the durability contract needs (etcd's raftNode does the same):
1. `messages` go out first: a leader may replicate while it persists its own copy;
2. snapshot, entries and hard state are written to the Raft log (fsynced when `must_sync`),
   in a worker thread so the loop keeps accepting requests meanwhile;
3. `persisted_messages` (votes, append acknowledgements) leave only after that write;
4. a snapshot is installed, committed entries are applied in one batch, read states are
   handed over; then the state machine's between-Readies work runs (Raft log snapshots and
   compaction, kept out of apply so that they never race a log write);
5. `advance()`.

Applying while the next write runs (a pipeline) was tried and measured: it shortens each
round, so batches shrink and the state commit that blocks the loop runs more often; with 256
clients it lost 10-20% of put throughput, so the rounds stay sequential.

Applying in a thread of its own, so that the state commit's fsync would not hold the loop,
was measured as well (one member, put with 256 clients, against the bare server in the same
runs): the whole batch applied in a thread, 0.70 and 0.68x the bare server against 0.70 and
0.73x; only the state transaction begun and committed in a thread, the applying itself left
on the loop, 0.67 and 0.65x against 0.67 and 0.73x; sequential put slower in both, by the
hand-offs. Under that load the loop thread uses about 0.9 of a core and waits in the state
commit for most of the rest (the benchmark prints both the loop's cores and the other
threads'), so at most that tenth was to be won, and the runs' noise (10-20%) hides anything
smaller; the moved variants did not show it. Apply stays on the loop.

A small Ready on a quiet node (a sequential writer, a follower's single-entry append) is
written on the loop thread instead: handing it to the writer thread and back costs two thread
wake-ups, about 0.3 ms of a 2.8 ms sequential put on one member of the 2-core development
machine (about 0.5 ms each on the leader of three members, where they wait for the GIL and
the busy cores), while blocking the loop for its fsync delays nothing when no other proposal
is waiting. Any burst (more entries, or proposals queued meanwhile) still goes to the thread,
so under load the loop keeps taking requests while the batch is written.

A leader's small Ready also carries appends for its followers, which must reach them while
its own fsync runs, not after it. The peer streams that carry them are written by tasks on
this loop, so the driver yields to the loop once (they write what they were handed) before it
writes inline. It writes inline only when everything before these entries is committed: with
earlier appends still awaiting acknowledgement (a few concurrent writers), the write goes to
the thread, so that the loop commits and answers those while it runs (written inline, 8
writers on three members lost about 5% of their puts).

A hard state that only moves the commit index needs no fsync (`must_sync` is false): it is
kept in memory and written with the next Ready that writes anything, so a quiet member does
not pay a log commit per apply. Losing it in a crash only means the commit index is learned
again (the state env records what was applied, and the applier skips it on replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from etcdpy import logutil
from etcdpy.raft import (
    ConfChange,
    Entry,
    HardState,
    Message,
    MessageType,
    ProposalDropped,
    RawNode,
    ReadState,
    Ready,
    Snapshot,
    SoftState,
    StateType,
)

log = logutil.get("raft")

MAX_PROPOSALS_PER_ROUND = 4096  # bounds one iteration's work; the rest waits for the next
# A Ready with at most this many entries, no snapshot and no proposal queued behind it is
# written on the loop thread (see the module docstring).
INLINE_SAVE_MAX_ENTRIES = 2


class RaftLogWriter(Protocol):
    def save(
        self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None,
        sync: bool,
    ) -> None: ...


class Transport(Protocol):
    def send(self, messages: Sequence[Message]) -> None: ...


class StateMachine(Protocol):
    """What the node hands its committed work to (the server's applier)."""

    def apply(self, entries: Sequence[Entry]) -> None: ...

    def restore(self, snapshot: Snapshot) -> None: ...

    def on_read_states(self, read_states: Sequence[ReadState]) -> None: ...

    def on_soft_state(self, soft_state: SoftState, term: int) -> None: ...

    def on_proposal_dropped(self, request_id: int) -> None: ...

    def merge_snapshot(self, message: Message) -> Message:
        """An outgoing MsgSnap, re-labelled with what the state image sent along holds."""
        ...

    def between_readies(self) -> None:
        """Work that must not overlap a Raft log write (log snapshots, compaction)."""
        ...


class RaftNode:
    def __init__(
        self,
        rawnode: RawNode,
        log_writer: RaftLogWriter,
        transport: Transport,
        state_machine: StateMachine,
        tick_interval_s: float,
        unsafe_forget_vote: bool = False,
    ) -> None:
        self._rawnode = rawnode
        # TEST-ONLY defect (ETCDPY_TEST_DEFECTS=vote-not-persisted): every hard state is saved
        # with vote=0, so after a restart this member may vote again in a term it voted in.
        self._unsafe_forget_vote = unsafe_forget_vote
        self._log_writer = log_writer
        self._transport = transport
        self._state_machine = state_machine
        self._tick_interval_s = tick_interval_s
        self._proposals: list[tuple[int, bytes]] = []  # (request id, data), in arrival order
        self._conf_changes: list[tuple[int, ConfChange]] = []
        self._read_requests: list[bytes] = []
        self._messages_in: list[Message] = []
        self._calls: list[Callable[[RawNode], None]] = []
        # Wake-ups: a flag plus the future the loop sleeps on (cheaper than an Event waited
        # with asyncio.wait_for, which makes a task per sleep before Python 3.12).
        self._woken = False
        self._sleeper: asyncio.Future[None] | None = None
        self._stopped = False
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raft-log")
        # A commit-only hard state not yet written (see the module docstring); written with
        # the next save, or on stop.
        self._unsaved_hard_state: HardState | None = None
        status = rawnode.status()
        self.term = status.hard_state.term
        self.lead = 0
        self.role = StateType.FOLLOWER
        self.committed_index = status.hard_state.commit

    # --- what request handlers and the transport call (never touch the core directly) ---

    def propose(self, request_id: int, data: bytes) -> None:
        self._proposals.append((request_id, data))
        self._wake()

    def propose_conf_change(self, request_id: int, change: ConfChange) -> None:
        self._conf_changes.append((request_id, change))
        self._wake()

    def read_index(self, ctx: bytes) -> None:
        self._read_requests.append(ctx)
        self._wake()

    def step(self, message: Message) -> None:
        """A message from a peer (transport side)."""
        self._messages_in.append(message)
        self._wake()

    def call(self, fn: Callable[[RawNode], None]) -> None:
        """Run `fn(rawnode)` on the loop at the next iteration (transfer leader, campaign...)."""
        self._calls.append(fn)
        self._wake()

    def status(self):  # type: ignore[no-untyped-def]
        return self._rawnode.status()

    # --- the loop ---

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._tick_interval_s
        try:
            while not self._stopped:
                timeout = max(0.0, next_tick - loop.time())
                if not self._woken:
                    await self._sleep(loop, timeout)
                self._woken = False
                now = loop.time()
                if now >= next_tick:
                    self._rawnode.tick()
                    # Skipped ticks are not replayed: a stalled loop must not fire a burst of
                    # elections; it just resumes ticking.
                    next_tick = max(next_tick + self._tick_interval_s, now)
                self._feed_core()
                while self._rawnode.has_ready():
                    await self._handle_ready(self._rawnode.ready())
                    self._feed_core()
        finally:
            self._io.shutdown(wait=True)
            with contextlib.suppress(Exception):  # best effort: losing it is harmless
                self._flush_unsaved_hard_state()

    def _wake(self) -> None:
        self._woken = True
        sleeper = self._sleeper
        if sleeper is not None and not sleeper.done():
            sleeper.set_result(None)

    async def _sleep(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Until `_wake()` or `timeout` seconds, whichever comes first."""
        sleeper = loop.create_future()
        self._sleeper = sleeper
        timer = loop.call_later(timeout, _settle, sleeper)
        try:
            await sleeper
        finally:
            timer.cancel()
            self._sleeper = None

    def stop(self) -> None:
        self._stopped = True
        self._wake()

    def _flush_unsaved_hard_state(self) -> None:
        """On the way out: the commit index held back from the log is written after all."""
        hard_state, self._unsaved_hard_state = self._unsaved_hard_state, None
        if hard_state is not None:
            self._log_writer.save(hard_state, (), None, False)

    def _feed_core(self) -> None:
        rawnode = self._rawnode
        messages, self._messages_in = self._messages_in, []
        for message in messages:
            try:
                rawnode.step(message)
            except Exception as exc:  # a bad or stale peer message must not stop the node
                log.debug("dropped peer message", error=str(exc), type=str(message.type))
        calls, self._calls = self._calls, []
        for fn in calls:
            fn(rawnode)
        changes, self._conf_changes = self._conf_changes, []
        for request_id, change in changes:
            try:
                rawnode.propose_conf_change(change)
            except ProposalDropped:
                self._state_machine.on_proposal_dropped(request_id)
        proposals = self._proposals[:MAX_PROPOSALS_PER_ROUND]
        del self._proposals[:MAX_PROPOSALS_PER_ROUND]
        if self._proposals:
            self._wake()
        if proposals:
            try:
                # One append and one MsgApp per follower for the whole batch.
                rawnode.propose_many([data for _, data in proposals])
            except ProposalDropped:
                for request_id, _ in proposals:
                    self._state_machine.on_proposal_dropped(request_id)
        if self._read_requests:
            reads, self._read_requests = self._read_requests, []
            for ctx in reads:
                rawnode.read_index(ctx)

    async def _handle_ready(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state, rd.hard_state)
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
            self.committed_index = rd.hard_state.commit
        if rd.messages:
            self._transport.send(self._merge_snapshots(rd.messages))
        hard_state = rd.hard_state
        if hard_state is not None and self._unsafe_forget_vote:
            hard_state = dataclasses.replace(hard_state, vote=0)  # the test-only defect
        if rd.snapshot is None and not rd.entries and not rd.must_sync:
            # Nothing that needs the disk now: a commit-only hard state waits for the next
            # write (see the module docstring).
            if hard_state is not None:
                self._unsaved_hard_state = hard_state
            hard_state = None
        elif hard_state is None:
            hard_state = self._unsaved_hard_state
        if rd.snapshot is not None or rd.entries or hard_state is not None:
            self._unsaved_hard_state = None
            if self._quiet_enough_to_save_inline(rd):
                if rd.messages:
                    # One turn of the loop: the peer streams write the messages just handed
                    # to them, so followers append while this member writes (docstring).
                    await asyncio.sleep(0)
                self._log_writer.save(hard_state, rd.entries, None, rd.must_sync)
            else:
                await asyncio.get_running_loop().run_in_executor(
                    self._io, self._log_writer.save, hard_state, rd.entries, rd.snapshot,
                    rd.must_sync,
                )
        if rd.persisted_messages:
            self._transport.send(self._merge_snapshots(rd.persisted_messages))
        if rd.snapshot is not None:
            self._state_machine.restore(rd.snapshot)
        if rd.committed_entries:
            self._state_machine.apply(rd.committed_entries)
        if rd.read_states:
            self._state_machine.on_read_states(rd.read_states)
        self._state_machine.between_readies()
        self._rawnode.advance()

    def _quiet_enough_to_save_inline(self, rd: Ready) -> bool:
        if rd.snapshot is not None or len(rd.entries) > INLINE_SAVE_MAX_ENTRIES or self._proposals:
            return False
        # A leader whose earlier appends still await acknowledgement: those arrive during this
        # write, and the loop commits and answers them meanwhile if the write is in the thread.
        return not (rd.messages and rd.entries
                    and rd.entries[0].index > self.committed_index + 1)

    def _merge_snapshots(self, messages: Sequence[Message]) -> Sequence[Message]:
        if not any(m.type == MessageType.SNAP for m in messages):
            return messages
        return [self._state_machine.merge_snapshot(m) if m.type == MessageType.SNAP else m
                for m in messages]

    def _on_soft_state(self, soft: SoftState, hard: HardState | None) -> None:
        if hard is not None:
            self.term = hard.term
        if soft.raft_state != self.role or soft.lead != self.lead:
            self.role, self.lead = soft.raft_state, soft.lead
            self._state_machine.on_soft_state(soft, self.term)

    def conf_state(self):  # type: ignore[no-untyped-def]
        return self._rawnode.conf_state()

    def apply_conf_change(self, change: ConfChange):  # type: ignore[no-untyped-def]
        """Called by the state machine while applying a CONF_CHANGE entry (loop thread)."""
        return self._rawnode.apply_conf_change(change)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

"""Where RaftNode writes a Ready: on the loop thread when that delays nothing, else in its
writer thread (raft_node.py's module docstring). Real Raft core, in-memory log storage; the
writer records the thread each write ran on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from etcdpy.raft import (
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
)
from etcdpy.server.raft_node import INLINE_SAVE_MAX_ENTRIES, RaftNode
from tests.raft.test_rawnode import fresh, node, run


class RecordingWriter:
    """Persists into the core's MemoryStorage and notes (thread name, entries) per write."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._storage = storage
        self.writes: list[tuple[str, int]] = []

    def save(self, hard_state: HardState | None, entries: Sequence[Entry],
             snapshot: Snapshot | None, sync: bool) -> None:
        self._storage.append(entries)
        if hard_state is not None:
            self._storage.set_hard_state(hard_state)
        if entries:
            self.writes.append((threading.current_thread().name, len(entries)))


class Sent:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def send(self, messages: Sequence[Message]) -> None:
        self.messages.extend(messages)


class Applied:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def apply(self, entries: Sequence[Entry]) -> None:
        self.data.extend(e.data for e in entries if e.type == EntryType.NORMAL and e.data)

    def restore(self, snapshot: Snapshot) -> None:
        raise AssertionError("no snapshot expected")

    def on_read_states(self, read_states: Sequence[ReadState]) -> None:
        pass

    def on_soft_state(self, soft_state: SoftState, term: int) -> None:
        pass

    def on_proposal_dropped(self, request_id: int) -> None:
        raise AssertionError(f"proposal {request_id} dropped")

    def merge_snapshot(self, message: Message) -> Message:
        return message

    def between_readies(self) -> None:
        pass


async def _until(check: Callable[[], object], what: str) -> None:
    for _ in range(500):  # bounded: 5 s
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_single_member_writes_one_proposal_inline_and_a_burst_in_the_thread() -> None:
    rawnode, storage = fresh([1])
    rawnode.campaign()
    run(rawnode, storage)
    assert rawnode.status().soft_state.raft_state == StateType.LEADER
    writer, applied = RecordingWriter(storage), Applied()
    raft = RaftNode(rawnode, writer, Sent(), applied, tick_interval_s=0.1)

    async def scenario() -> None:
        task = asyncio.create_task(raft.run())
        try:
            raft.propose(1, b"alone")
            await _until(lambda: applied.data == [b"alone"], "the lone put applied")
            burst = [b"burst-%d" % i for i in range(INLINE_SAVE_MAX_ENTRIES + 3)]
            for i, data in enumerate(burst):  # queued before the loop runs: one Ready
                raft.propose(10 + i, data)
            await _until(lambda: applied.data[1:] == burst, "the burst applied")
        finally:
            raft.stop()
            await task

    asyncio.run(scenario())
    assert writer.writes == [("MainThread", 1), (writer.writes[1][0], INLINE_SAVE_MAX_ENTRIES + 3)]
    assert writer.writes[1][0].startswith("raft-log")


class LoopStreams:
    """Like the peer transport: `send` only queues, and a task on the loop writes the queue to
    the wire on a later turn (here: the `wire` list)."""

    def __init__(self) -> None:
        self.queued: list[Message] = []
        self.wire: list[Message] = []

    def send(self, messages: Sequence[Message]) -> None:
        self.queued.extend(messages)
        asyncio.get_running_loop().call_soon(self._write)

    def _write(self) -> None:
        self.wire.extend(self.queued)
        self.queued.clear()


def test_a_leader_lets_its_appends_leave_before_writing_its_own_copy_inline() -> None:
    """A leader's one-entry Ready carries the MsgApp for its follower. With nothing else in
    flight it is written on the loop thread (no hand-off), but only after the loop had a
    turn, so that the MsgApp was on the wire before this member's own write started."""
    storage = MemoryStorage.bootstrap([1, 2])
    rawnode = node(storage, 1, pre_vote=False)
    run(rawnode, storage)
    rawnode.campaign()
    run(rawnode, storage)
    term = rawnode.status().hard_state.term
    rawnode.step(Message(type=MessageType.VOTE_RESP, from_=2, to=1, term=term))
    run(rawnode, storage)
    assert rawnode.status().soft_state.raft_state == StateType.LEADER
    # The follower acknowledges the leader's first entry, so appends flow to it (replicate).
    rawnode.step(Message(type=MessageType.APP_RESP, from_=2, to=1, term=term,
                         index=storage.last_index()))
    run(rawnode, storage)
    streams = LoopStreams()
    on_wire_at_write: list[list[Message]] = []

    class ObservingWriter(RecordingWriter):
        def save(self, hard_state: HardState | None, entries: Sequence[Entry],
                 snapshot: Snapshot | None, sync: bool) -> None:
            if entries:
                on_wire_at_write.append(list(streams.wire))
            super().save(hard_state, entries, snapshot, sync)

    writer = ObservingWriter(storage)
    raft = RaftNode(rawnode, writer, streams, Applied(), tick_interval_s=0.1)

    async def scenario() -> None:
        task = asyncio.create_task(raft.run())
        try:
            raft.propose(1, b"replicated")
            await _until(lambda: writer.writes, "the leader's write")
            # The follower has not acknowledged that entry: the next append is written in
            # the thread, so that the loop can take the acknowledgement meanwhile.
            raft.propose(2, b"behind an unacknowledged one")
            await _until(lambda: len(writer.writes) == 2, "the second write")
        finally:
            raft.stop()
            await task

    asyncio.run(scenario())
    assert writer.writes[0] == ("MainThread", 1)
    assert writer.writes[1][0].startswith("raft-log"), writer.writes
    sent_before = [m for m in on_wire_at_write[0] if m.type == MessageType.APP and m.to == 2]
    assert sent_before and sent_before[-1].entries[-1].data == b"replicated", (
        "the MsgApp carrying the entry must be written to the wire before the leader's own write")

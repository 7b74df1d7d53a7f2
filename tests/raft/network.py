"""An in-memory network of RawNodes for tests (after etcd's `network` test harness).

Each node runs the full Ready loop against its own MemoryStorage: persist, send,
apply (including conf changes), advance.  `send()` delivers messages until the
network is quiescent; filters drop, cut, isolate or ignore traffic.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from etcdpy.raft import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftConfig,
    RawNode,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    StateType,
    StepPeerNotFound,
)
from etcdpy.raft.core import Raft

# Upper bound on deliveries in one send(): a livelock in the core fails the test.
MAX_DELIVERIES = 100_000


@dataclass
class Peer:
    node: RawNode
    storage: MemoryStorage
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    @property
    def raft(self) -> Raft:
        return self.node.raft

    @property
    def state(self) -> StateType:
        return self.raft.state

    @property
    def term(self) -> int:
        return self.raft.term

    def log(self) -> list[Entry]:
        return self.raft.raft_log.all_entries()

    def applied_data(self) -> list[bytes]:
        return [e.data for e in self.applied if e.type == EntryType.NORMAL and e.data]

    def drain(self) -> list[Message]:
        """Handle every Ready; returns the messages to send."""
        out: list[Message] = []
        for _ in range(1000):
            if not self.node.has_ready():
                break
            rd = self.node.ready()
            if rd.snapshot is not None:
                self.storage.apply_snapshot(rd.snapshot)
                # The state machine is replaced by the snapshot's: record it as applied.
            self.storage.append(rd.entries)
            if rd.hard_state is not None:
                self.storage.set_hard_state(rd.hard_state)
            out.extend(rd.messages)
            out.extend(rd.persisted_messages)
            self.read_states.extend(rd.read_states)
            for e in rd.committed_entries:
                if e.type == EntryType.CONF_CHANGE:
                    self.node.apply_conf_change(ConfChange.decode(e.data))
                self.applied.append(e)
            self.node.advance()
        else:
            raise AssertionError("node kept producing Readies")
        return out


class Network:
    def __init__(
        self,
        ids: list[int],
        seed: int = 0,
        learners: list[int] | None = None,
        **config: Any,
    ) -> None:
        self.rng = random.Random(seed)
        self.peers: dict[int, Peer] = {}
        self.voters = list(ids)
        self.learners = list(learners or [])
        self.config = config
        self.dropm: dict[tuple[int, int], float] = {}
        self.ignorem: set[MessageType] = set()
        self.msg_hook: Callable[[Message], bool] | None = None
        self.delivered: list[Message] = []
        for i in [*ids, *self.learners]:
            self.add_peer(i)

    def add_peer(self, i: int, storage: MemoryStorage | None = None) -> Peer:
        if storage is None:
            storage = MemoryStorage.bootstrap(self.voters, self.learners)
        cfg = RaftConfig(id=i, rng=random.Random(self.rng.random()), **self.config)
        p = Peer(RawNode(cfg, storage), storage)
        self.peers[i] = p
        # Apply the bootstrap configuration entries (nothing is sent yet).
        assert p.drain() == []
        return p

    def __getitem__(self, i: int) -> Peer:
        return self.peers[i]

    # --- filters --------------------------------------------------------------

    def drop(self, frm: int, to: int, perc: float) -> None:
        self.dropm[(frm, to)] = perc

    def cut(self, a: int, b: int) -> None:
        self.drop(a, b, 2.0)
        self.drop(b, a, 2.0)

    def isolate(self, i: int) -> None:
        for j in self.peers:
            if j != i:
                self.cut(i, j)

    def ignore(self, t: MessageType) -> None:
        self.ignorem.add(t)

    def recover(self) -> None:
        self.dropm.clear()
        self.ignorem.clear()
        self.msg_hook = None

    def _filter(self, msgs: list[Message]) -> list[Message]:
        out = []
        for m in msgs:
            if m.type in self.ignorem:
                continue
            perc = self.dropm.get((m.from_, m.to), 0.0)
            if perc >= 1.0 or (perc > 0 and self.rng.random() < perc):
                continue
            if self.msg_hook is not None and not self.msg_hook(m):
                continue
            out.append(m)
        return out

    # --- driving ----------------------------------------------------------------

    def send(self, *msgs: Message) -> None:
        """Deliver msgs and everything they cause until nothing is in flight."""
        queue = list(msgs)
        for _ in range(MAX_DELIVERIES):
            if not queue:
                return
            m = queue.pop(0)
            p = self.peers.get(m.to)
            if p is None:
                continue
            self.delivered.append(m)
            # A forwarded proposal the leader refuses is dropped inside step(); a response
            # from a node no longer in the configuration is dropped here, as a transport
            # would after logging it.
            with contextlib.suppress(StepPeerNotFound):
                p.node.step(m)
            queue.extend(self._filter(p.drain()))
        raise AssertionError("network did not quiesce")

    def flush(self, *ids: int) -> None:
        """Drain the given nodes (all if none) and deliver what they send."""
        out: list[Message] = []
        for i in ids or tuple(self.peers):
            out.extend(self.peers[i].drain())
        self.send(*self._filter(out))

    def campaign(self, i: int) -> None:
        self.peers[i].node.campaign()
        self.flush(i)

    def propose(self, i: int, data: bytes) -> None:
        self.peers[i].node.propose(data)
        self.flush(i)

    def propose_conf_change(self, i: int, cc: ConfChange) -> None:
        self.peers[i].node.propose_conf_change(cc)
        self.flush(i)

    def read_index(self, i: int, ctx: bytes) -> None:
        self.peers[i].node.read_index(ctx)
        self.flush(i)

    def transfer_leader(self, leader: int, to: int) -> None:
        self.peers[leader].node.transfer_leader(to)
        self.flush(leader)

    def tick(self, i: int, n: int = 1) -> None:
        for _ in range(n):
            self.peers[i].node.tick()
            self.flush(i)

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for i in list(self.peers):
                self.peers[i].node.tick()
            self.flush()

    def heartbeat(self, leader: int) -> None:
        """One heartbeat round from the leader, as its tick would trigger."""
        self.peers[leader].raft.step(Message(type=MessageType.BEAT, from_=leader))
        self.flush(leader)

    def elapse_election(self, i: int) -> None:
        """Tick i until it reaches its randomized timeout (without other nodes ticking)."""
        r = self.peers[i].raft
        for _ in range(2 * r.election_timeout + 1):
            before = (r.state, r.term)
            self.tick(i)
            if (r.state, r.term) != before:
                return

    def leader(self) -> int:
        leaders = [i for i, p in self.peers.items() if p.state == StateType.LEADER]
        return max(leaders, key=lambda i: self.peers[i].term) if leaders else 0


def preset_peer(
    nt: Network, i: int, terms: list[int], term: int, vote: int = 0, commit: int = 0
) -> Peer:
    """Replace peer i by one whose log has entries 1.. with the given terms (for the
    paper's figures; the configuration is only in the snapshot at index 0)."""
    cs = ConfState(voters=tuple(sorted(nt.voters)), learners=tuple(sorted(nt.learners)))
    s = MemoryStorage()
    s.apply_snapshot(Snapshot(metadata=SnapshotMetadata(conf_state=cs)))
    s.append([Entry(term=t, index=k + 1) for k, t in enumerate(terms)])
    s.set_hard_state(HardState(term=term, vote=vote, commit=commit))
    return nt.add_peer(i, s)


def compact(nt: Network, i: int, index: int) -> None:
    """Snapshot peer i's state at `index` (applied) and drop its log up to there."""
    p = nt.peers[i]
    cs = p.raft.trk.conf_state()
    p.storage.create_snapshot(index, cs, b"snap@%d" % index)
    p.storage.compact(index)

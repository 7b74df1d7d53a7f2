"""One simulated member's process state, and how a message is written in the trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from etcdpy.raft import (
    ConfState,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    StateType,
)

from .disk import SimDisk
from .kv import KVStore


def describe(m: Message) -> str:
    s = f"{m.from_}->{m.to} {m.type.name} t{m.term}"
    if m.type in (MessageType.APP, MessageType.APP_RESP, MessageType.SNAP):
        s += f" {m.log_term}/{m.index} c{m.commit} n{len(m.entries)}"
    elif m.type in (MessageType.HEARTBEAT, MessageType.VOTE, MessageType.PRE_VOTE):
        s += f" {m.log_term}/{m.index} c{m.commit}"
    if m.reject:
        s += f" REJECT hint{m.reject_hint}"
    if m.snapshot is not None and m.snapshot.metadata.index:
        s += f" snap{m.snapshot.metadata.term}/{m.snapshot.metadata.index}"
    if m.context:
        s += f" ctx{m.context!r}"
    return s


class CrashPoint(IntEnum):
    NONE = 0
    BEFORE_SYNC = 1  # `messages` are out, the fsync never happens
    BEFORE_SEND = 2  # the fsync happened, nothing was sent


@dataclass(slots=True)
class SimNode:
    """One member: its disk survives crashes, everything else is process memory.

    Invariant: raw is None exactly when the node is down; kv.applied is what the core
    has handed us to apply (the ApplyOrder checker enforces the sequence)."""

    id: int
    disk: SimDisk
    raw: RawNode | None = None
    storage: MemoryStorage | None = None
    kv: KVStore = field(default_factory=KVStore)
    conf: ConfState = field(default_factory=ConfState)
    state: StateType = StateType.FOLLOWER
    lead: int = 0
    commit_seen: int = 0  # highest commit index of this incarnation already recorded
    last_hard_state: HardState = field(default_factory=HardState)  # as last handed to disk
    awaiting_first_commit: bool = False  # a leader that has not yet advanced its commit
    removed_peers: set[int] = field(default_factory=set)
    retired: bool = False  # applied its own removal: stopped for good after a crash
    restarts: int = 0

    @property
    def alive(self) -> bool:
        return self.raw is not None

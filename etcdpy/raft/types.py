"""Value types shared by every part of the Raft core.

Numbering of the enums follows etcd's raftpb so that a codec in `peer/` can map
them one to one.  Everything here is an immutable value object.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum


class MessageType(IntEnum):
    HUP = 0
    BEAT = 1
    PROP = 2
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10
    SNAP_STATUS = 11
    CHECK_QUORUM = 12
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


# Messages that never leave the node: they are how the app and the timers talk to the core.
LOCAL_MESSAGES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)

# Responses that acknowledge durable state, so they may only be sent after the Ready is persisted.
RESPONSE_AFTER_PERSIST = frozenset(
    {MessageType.APP_RESP, MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP}
)


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class StateType(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class ConfChangeType(IntEnum):
    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def size(self) -> int:
        """Approximate wire size, used for every byte-based limit."""
        return len(self.data) + 16

    def payload_size(self) -> int:
        """What counts against max_uncommitted_entries_size (etcd counts data only)."""
        return len(self.data)


@dataclass(frozen=True, slots=True)
class HardState:
    term: int = 0
    vote: int = 0
    commit: int = 0

    def is_empty(self) -> bool:
        return self == EMPTY_HARD_STATE


EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True, slots=True)
class ConfState:
    """Invariant: voters and learners are sorted and disjoint."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        assert list(self.voters) == sorted(set(self.voters)), self.voters
        assert list(self.learners) == sorted(set(self.learners)), self.learners
        assert not set(self.voters) & set(self.learners), (self.voters, self.learners)


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    conf_state: ConfState = ConfState()
    index: int = 0
    term: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    data: bytes = b""
    metadata: SnapshotMetadata = SnapshotMetadata()

    def is_empty(self) -> bool:
        return self.metadata.index == 0


_CC_HEADER = struct.Struct(">BQI")  # type, node id, context length


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        """Fixed header then the context; stable across versions and never pickled."""
        return _CC_HEADER.pack(int(self.type), self.node_id, len(self.context)) + self.context

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        if len(data) < _CC_HEADER.size:
            raise ValueError(f"conf change too short: {len(data)} bytes")
        typ, node_id, n = _CC_HEADER.unpack_from(data)
        context = data[_CC_HEADER.size :]
        if len(context) != n:
            raise ValueError("conf change context length mismatch")
        return ConfChange(ConfChangeType(typ), node_id, bytes(context))


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int = 0
    from_: int = 0
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class SoftState:
    lead: int
    raft_state: StateType


@dataclass(frozen=True, slots=True)
class ReadState:
    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    soft_state: SoftState | None  # None when unchanged since the last Ready
    hard_state: HardState | None  # None when unchanged (persist it when not None)
    read_states: tuple[ReadState, ...]
    entries: tuple[Entry, ...]  # to append to stable storage (may overwrite a suffix)
    snapshot: Snapshot | None  # to install in stable storage (before entries)
    committed_entries: tuple[Entry, ...]  # to apply, in order
    messages: tuple[Message, ...]  # may be sent right away (before the local persist)
    persisted_messages: tuple[Message, ...]  # send only after the persist is durable
    must_sync: bool  # fsync needed (term/vote changed or new entries)

    def is_empty(self) -> bool:
        return (
            self.soft_state is None
            and self.hard_state is None
            and not self.read_states
            and not self.entries
            and self.snapshot is None
            and not self.committed_entries
            and not self.messages
            and not self.persisted_messages
        )

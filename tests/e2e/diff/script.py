"""The shape of a differential script: operations, symbolic revisions and the key space.

A script is plain data (protobuf requests plus a little metadata), built by `ops.generate`
from a seed or written by hand in a test, and played by `runner`. Keys, values and lease IDs
come from small sets so that operations collide (overwrite, delete and compare the same keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from google.protobuf.message import Message

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb

SortOrder = pb.RangeRequest.SortOrder
SortTarget = pb.RangeRequest.SortTarget
CompareTarget = pb.Compare.CompareTarget
CompareResult = pb.Compare.CompareResult
FilterType = pb.WatchCreateRequest.FilterType

# b"\xff" is the last key there can be; its prefix end is b"\x00" ("every key from it").
KEYS: tuple[bytes, ...] = (b"a", b"a/1", b"a/2", b"a/3", b"b", b"b/1", b"b/2", b"c", b"\xff")
PREFIXES: tuple[bytes, ...] = (b"a", b"a/", b"b/", b"b", b"c", b"\xff")
MISSING_KEY = b"nokey"
VALUES: tuple[bytes, ...] = (b"", b"0", b"1", b"v", b"vv", b"zz")
# Client-chosen lease IDs, so that both servers hold the same leases.
LEASE_IDS: tuple[int, ...] = (101, 102, 103, 104)
UNKNOWN_LEASE = 999
SHORT_LEASE = 199
# Long enough that no lease expires during a run: expiry time is not part of the script.
LONG_TTLS: tuple[int, ...] = (300, 600, 3600)
MAX_LEASE_TTL = 9_000_000_000
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
MAX_REQUEST_BYTES = 64 * 1024  # both servers are started with this --max-request-bytes
MIN_OPS = 200
WATCH_STREAMS = 4
WARM_UP_OPS = 12  # plain writes first, so that reads and watches have history to look at


class OpKind(IntEnum):
    RANGE = 1
    PUT = 2
    DELETE_RANGE = 3
    TXN = 4
    COMPACT = 5
    LEASE_GRANT = 6
    LEASE_REVOKE = 7
    LEASE_TIME_TO_LIVE = 8
    LEASE_LEASES = 9
    LEASE_KEEP_ALIVE = 10
    WATCH_CREATE = 11
    WATCH_CANCEL = 12
    WATCH_PROGRESS = 13


class RevKind(IntEnum):
    """How a revision field is chosen at run time (see `RevSpec.resolve`)."""

    LATEST = 0  # 0: the current revision
    NEGATIVE = 1  # -1 - offset
    PAST = 2  # current - offset, not below the compacted revision
    COMPACTED = 3  # exactly the compacted revision
    BELOW_COMPACTED = 4  # below the compacted revision (an error once something was compacted)
    CURRENT = 5  # the current revision, spelled out
    FUTURE = 6  # current + 1 + offset


@dataclass(frozen=True, slots=True)
class RevSpec:
    kind: RevKind
    offset: int = 0

    def __post_init__(self) -> None:
        assert self.offset >= 0, "offsets count backwards or forwards from a known revision"

    def resolve(self, current: int, compacted: int) -> int:
        """The revision to send, given the store's current and compacted revisions."""
        assert current >= 1 and 0 <= compacted <= current, (current, compacted)
        kind = self.kind
        if kind == RevKind.LATEST:
            return 0
        if kind == RevKind.NEGATIVE:
            return -1 - self.offset
        if kind == RevKind.PAST:
            return max(current - self.offset, compacted, 1)
        if kind == RevKind.COMPACTED:
            return compacted
        if kind == RevKind.BELOW_COMPACTED:
            return max(compacted - 1 - self.offset, 1)
        if kind == RevKind.CURRENT:
            return current
        return current + 1 + self.offset


@dataclass(frozen=True, slots=True)
class ExpectedError:
    code: str  # gRPC status code name
    message: str


INVALID_SORT_OPTION = ExpectedError("INVALID_ARGUMENT", "etcdserver: invalid sort option")


@dataclass(frozen=True, slots=True)
class Op:
    """One request of the script. `request` is the protobuf request (for watch ops the inner
    create/cancel/progress request); `rev`, when set, fills its revision field at run time.
    Treat `request` as read-only: the runner sends a copy."""

    kind: OpKind
    request: Message
    note: str
    rev: RevSpec | None = None
    stream: int = -1  # watch ops: index of the watch stream, 0 <= stream < WATCH_STREAMS
    # Where etcd 3.5.1 itself is wrong (it crashes), the answer of later etcd releases; such
    # an op is not sent to the reference server and etcdpy's answer must equal this.
    expect: ExpectedError | None = None

    def __post_init__(self) -> None:
        is_watch = self.kind in (OpKind.WATCH_CREATE, OpKind.WATCH_CANCEL, OpKind.WATCH_PROGRESS)
        assert is_watch == (0 <= self.stream < WATCH_STREAMS), "watch ops name their stream"
        if self.rev is not None:
            assert self.kind in (OpKind.RANGE, OpKind.COMPACT, OpKind.WATCH_CREATE)

    def resolved(self, current: int, compacted: int) -> Message:
        """A copy of the request with its symbolic revision made concrete."""
        request = type(self.request)()
        request.CopyFrom(self.request)
        if self.rev is not None:
            rev = self.rev.resolve(current, compacted)
            if self.kind == OpKind.WATCH_CREATE:
                request.start_revision = rev  # type: ignore[attr-defined]
            else:
                request.revision = rev  # type: ignore[attr-defined]
        return request

    def describe(self) -> str:
        where = f" stream={self.stream}" if self.stream >= 0 else ""
        rev = f" rev={self.rev.kind.name}-{self.rev.offset}" if self.rev else ""
        return f"{self.kind.name}{where}{rev} ({self.note})"


@dataclass(frozen=True, slots=True)
class Script:
    seed: int
    watches: tuple[Op, ...]  # WATCH_CREATE ops sent before the first op
    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        assert all(w.kind == OpKind.WATCH_CREATE for w in self.watches)


def prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with `prefix` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"

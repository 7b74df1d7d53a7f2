"""A seeded script of etcd operations over a small key space, errors and watches included.

The same seed always gives the same script. Keys, values and lease IDs come from small sets so
that operations collide (overwrite, delete and compare the same keys). Revisions that depend on
what the server did (a past one, the compacted one, a future one) are kept symbolic as a
`RevSpec` and resolved by the runner just before sending, from the revisions the reference
server reported, so both servers still receive byte-identical requests.

Every feature the brief lists is generated at least once per script ("mandatory" ops placed at
seeded positions); the rest of the script is drawn at random with weights.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
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


Factory = Callable[[], list[Op]]


class _Generator:
    """Builds one script. `approx_rev` over-estimates the revision (it counts every write
    request, failed ones too); it only makes filter and compare constants plausible."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.approx_rev = 1
        self.watch_creates = [0] * WATCH_STREAMS  # creates sent per stream, for cancel ids

    # --- building blocks ---

    def key_range(self) -> tuple[bytes, bytes, str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            key = rng.choice((*KEYS, MISSING_KEY))
            return key, b"", "single key"
        if roll < 0.7:
            prefix = rng.choice(PREFIXES)
            return prefix, prefix_end(prefix), "prefix"
        if roll < 0.82:
            return rng.choice(KEYS), b"\x00", "from key"
        if roll < 0.9:
            return b"\x00", b"\x00", "all keys"
        first, second = rng.choice(KEYS), rng.choice(KEYS)
        return first, second, "span (maybe empty)"

    def rev_spec(self, kinds: Sequence[RevKind]) -> RevSpec:
        return RevSpec(self.rng.choice(kinds), self.rng.randint(0, 4))

    def range_request(self) -> tuple[pb.RangeRequest, str]:
        rng = self.rng
        key, end, what = self.key_range()
        r = pb.RangeRequest(key=key, range_end=end)
        notes = [what]
        if rng.random() < 0.4:
            r.limit = rng.randint(1, 4)
            notes.append("limit")
        if rng.random() < 0.35:
            r.sort_order = rng.choice(list(SortOrder.values()))
            r.sort_target = rng.choice(list(SortTarget.values()))
            notes.append(f"sort {SortOrder.Name(r.sort_order)} {SortTarget.Name(r.sort_target)}")
        if rng.random() < 0.3:
            r.serializable = True
            notes.append("serializable")
        if rng.random() < 0.15:
            r.keys_only = True
            notes.append("keys_only")
        if rng.random() < 0.1:
            r.count_only = True
            notes.append("count_only")
        if rng.random() < 0.2:
            top = self.approx_rev + 2
            for name in ("min_mod_revision", "max_mod_revision",
                         "min_create_revision", "max_create_revision"):
                if rng.random() < 0.5:
                    setattr(r, name, rng.randint(1, top))
                    notes.append(name)
        return r, ", ".join(notes)

    def put_request(self, key: bytes | None = None) -> tuple[pb.PutRequest, str]:
        rng = self.rng
        p = pb.PutRequest(key=key or rng.choice(KEYS), value=rng.choice(VALUES))
        notes = []
        if rng.random() < 0.4:
            p.prev_kv = True
            notes.append("prev_kv")
        if rng.random() < 0.2:
            p.lease = rng.choice(LEASE_IDS)
            notes.append("lease")
        roll = rng.random()
        if roll < 0.08:
            p.ignore_value = True
            p.value = b""
            notes.append("ignore_value")
        elif roll < 0.16:
            p.ignore_lease = True
            p.lease = 0
            notes.append("ignore_lease")
        return p, ", ".join(notes) or "plain"

    def compare(self) -> pb.Compare:
        rng = self.rng
        c = pb.Compare(key=rng.choice((*KEYS, MISSING_KEY)))
        if rng.random() < 0.2:
            prefix = rng.choice(PREFIXES)
            c.key, c.range_end = prefix, prefix_end(prefix)
        c.result = rng.choice(list(CompareResult.values()))
        c.target = rng.choice(list(CompareTarget.values()))
        if c.target == CompareTarget.VALUE:
            c.value = rng.choice(VALUES)
        elif c.target == CompareTarget.VERSION:
            c.version = rng.randint(0, 3)
        elif c.target == CompareTarget.CREATE:
            c.create_revision = rng.randint(0, self.approx_rev + 1)
        elif c.target == CompareTarget.MOD:
            c.mod_revision = rng.randint(0, self.approx_rev + 1)
        else:
            c.lease = rng.choice((0, *LEASE_IDS))
        return c

    def branch(self, taken: set[bytes], depth: int) -> list[pb.RequestOp]:
        """Ops for one txn branch that never put a key twice nor put and delete one key
        (those are the invalid cases, generated on purpose elsewhere). `taken` holds the keys
        already written on this path and is extended with this branch's writes."""
        rng = self.rng
        ops: list[pb.RequestOp] = []
        for _ in range(rng.randint(0, 4)):
            roll = rng.random()
            free = [k for k in KEYS if k not in taken]
            if roll < 0.35 and free:
                p, _ = self.put_request(rng.choice(free))
                taken.add(p.key)
                ops.append(pb.RequestOp(request_put=p))
                if rng.random() < 0.4:  # read after write inside the txn
                    ops.append(pb.RequestOp(request_range=pb.RangeRequest(key=p.key)))
            elif roll < 0.5 and free:
                key = rng.choice(free)
                taken.add(key)
                d = pb.DeleteRangeRequest(key=key, prev_kv=rng.random() < 0.5)
                ops.append(pb.RequestOp(request_delete_range=d))
            elif roll < 0.85:
                r, _ = self.range_request()
                if rng.random() < 0.1:
                    # An absolute revision: it may be compacted or in the future by now, which
                    # fails the whole txn.
                    r.revision = rng.choice((1, max(1, self.approx_rev - rng.randint(0, 12))))
                ops.append(pb.RequestOp(request_range=r))
            elif depth < 2:
                ops.append(pb.RequestOp(request_txn=self.txn_request(taken, depth + 1)))
        return ops

    def txn_request(self, taken: set[bytes], depth: int = 0) -> pb.TxnRequest:
        rng = self.rng
        t = pb.TxnRequest(compare=[self.compare() for _ in range(rng.randint(0, 3))])
        then_taken, else_taken = set(taken), set(taken)
        t.success.extend(self.branch(then_taken, depth))
        t.failure.extend(self.branch(else_taken, depth))
        # The branches exclude each other, but the enclosing branch must avoid both.
        taken |= then_taken | else_taken
        return t

    def watch_create(self) -> tuple[pb.WatchCreateRequest, str]:
        rng = self.rng
        key, end, what = self.key_range()
        w = pb.WatchCreateRequest(key=key, range_end=end)
        notes = [what]
        if rng.random() < 0.4:
            w.prev_kv = True
            notes.append("prev_kv")
        roll = rng.random()
        if roll < 0.15:
            w.filters.append(FilterType.NOPUT)
            notes.append("NOPUT")
        elif roll < 0.3:
            w.filters.append(FilterType.NODELETE)
            notes.append("NODELETE")
        if rng.random() < 0.15:
            # An id the stream may already use (duplicate) or that automatic ids will skip.
            w.watch_id = rng.randint(1, 5)
            notes.append(f"explicit id {w.watch_id}")
        return w, ", ".join(notes)

    # --- ops ---

    def _write(self, op: Op) -> list[Op]:
        self.approx_rev += 1
        return [op]

    def op_put(self) -> list[Op]:
        p, note = self.put_request()
        return self._write(Op(OpKind.PUT, p, note))

    def op_range(self, kinds: Sequence[RevKind] | None = None) -> list[Op]:
        r, note = self.range_request()
        rev = None
        if kinds is not None or self.rng.random() < 0.4:
            rev = self.rev_spec(kinds or list(RevKind))
        return [Op(OpKind.RANGE, r, note, rev)]

    def op_delete(self) -> list[Op]:
        key, end, what = self.key_range()
        d = pb.DeleteRangeRequest(key=key, range_end=end, prev_kv=self.rng.random() < 0.5)
        return self._write(Op(OpKind.DELETE_RANGE, d, what + (", prev_kv" if d.prev_kv else "")))

    def op_txn(self) -> list[Op]:
        return self._write(Op(OpKind.TXN, self.txn_request(set()), "random txn"))

    def op_txn_read_after_write(self) -> list[Op]:
        key = self.rng.choice(KEYS)
        t = pb.TxnRequest(compare=[self.compare()])
        for branch in (t.success, t.failure):
            p, _ = self.put_request(key)
            p.ignore_value = p.ignore_lease = False
            p.lease = 0
            branch.add(request_put=p)
            branch.add(request_range=pb.RangeRequest(key=key, range_end=prefix_end(key)))
            branch.add(request_delete_range=pb.DeleteRangeRequest(key=key + b"/", prev_kv=True))
        return self._write(Op(OpKind.TXN, t, "reads after writes in both branches"))

    def op_compact(self, kinds: Sequence[RevKind] = (RevKind.PAST,)) -> list[Op]:
        c = pb.CompactionRequest(physical=self.rng.random() < 0.5)
        # A past compaction keeps a few revisions of history for the past reads that follow.
        rev = RevSpec(self.rng.choice(kinds), self.rng.randint(3, 8))
        return [Op(OpKind.COMPACT, c, "physical" if c.physical else "logical", rev)]

    def op_lease_grant(self) -> list[Op]:
        g = pb.LeaseGrantRequest(ID=self.rng.choice(LEASE_IDS), TTL=self.rng.choice(LONG_TTLS))
        return [Op(OpKind.LEASE_GRANT, g, "client-chosen id (maybe existing)")]

    def op_lease_revoke(self, lease_id: int | None = None) -> list[Op]:
        lease_id = lease_id or self.rng.choice((*LEASE_IDS, UNKNOWN_LEASE))
        return self._write(Op(OpKind.LEASE_REVOKE, pb.LeaseRevokeRequest(ID=lease_id), "revoke"))

    def op_lease_ttl(self, lease_id: int | None = None) -> list[Op]:
        lease_id = lease_id or self.rng.choice((*LEASE_IDS, UNKNOWN_LEASE))
        t = pb.LeaseTimeToLiveRequest(ID=lease_id, keys=self.rng.random() < 0.6)
        return [Op(OpKind.LEASE_TIME_TO_LIVE, t, "keys" if t.keys else "no keys")]

    def op_lease_leases(self) -> list[Op]:
        return [Op(OpKind.LEASE_LEASES, pb.LeaseLeasesRequest(), "list")]

    def op_keep_alive(self, lease_id: int | None = None) -> list[Op]:
        lease_id = lease_id or self.rng.choice((*LEASE_IDS, UNKNOWN_LEASE))
        k = pb.LeaseKeepAliveRequest(ID=lease_id)
        return [Op(OpKind.LEASE_KEEP_ALIVE, k, "one request on a stream")]

    def op_watch_create(self, kinds: Sequence[RevKind] | None = None) -> list[Op]:
        stream = self.rng.randrange(WATCH_STREAMS)
        w, note = self.watch_create()
        rev = self.rev_spec(kinds) if kinds is not None else None
        self.watch_creates[stream] += 1
        return [Op(OpKind.WATCH_CREATE, w, "mid-run " + note, rev, stream)]

    def op_negative_watch(self) -> list[Op]:
        """A watch with a negative start, after a compaction (before any compaction it hits a
        known difference, tested on its own in test_differential.py)."""
        return [*self.op_compact(), *self.op_watch_create([RevKind.NEGATIVE])]

    def op_watch_cancel(self) -> list[Op]:
        stream = self.rng.randrange(WATCH_STREAMS)
        # Any id the stream may have assigned, or one past them (unknown: no answer).
        watch_id = self.rng.randint(0, self.watch_creates[stream])
        c = pb.WatchCancelRequest(watch_id=watch_id)
        return [Op(OpKind.WATCH_CANCEL, c, f"cancel {watch_id}", stream=stream)]

    def op_watch_progress(self) -> list[Op]:
        stream = self.rng.randrange(WATCH_STREAMS)
        return [Op(OpKind.WATCH_PROGRESS, pb.WatchProgressRequest(), "progress", stream=stream)]

    def op_short_lease(self) -> list[Op]:
        """A TTL below the minimum is raised to it; revoked at once, before it could expire."""
        g = pb.LeaseGrantRequest(ID=SHORT_LEASE, TTL=1)
        return [
            Op(OpKind.LEASE_GRANT, g, "TTL below the minimum"),
            *self.op_lease_revoke(SHORT_LEASE),
        ]

    # --- invalid requests ---

    def invalid_factories(self) -> list[Factory]:
        rng = self.rng

        def put(note: str, **fields: object) -> Factory:
            return lambda: self._write(Op(OpKind.PUT, pb.PutRequest(**fields), note))

        def txn(note: str, t: Callable[[], pb.TxnRequest]) -> Factory:
            return lambda: self._write(Op(OpKind.TXN, t(), note))

        def dup_put_put() -> pb.TxnRequest:
            t = pb.TxnRequest()
            t.success.add(request_put=pb.PutRequest(key=b"a", value=b"1"))
            t.success.add(request_put=pb.PutRequest(key=b"a", value=b"2"))
            return t

        def dup_put_delete() -> pb.TxnRequest:
            t = pb.TxnRequest()
            t.failure.add(request_delete_range=pb.DeleteRangeRequest(key=b"a/", range_end=b"a0"))
            t.failure.add(request_put=pb.PutRequest(key=b"a/2", value=b"1"))
            return t

        def dup_nested() -> pb.TxnRequest:
            inner = pb.TxnRequest()
            inner.success.add(request_put=pb.PutRequest(key=b"b", value=b"in"))
            t = pb.TxnRequest()
            t.success.add(request_put=pb.PutRequest(key=b"b", value=b"out"))
            t.success.add(request_txn=inner)
            return t

        def nested_both_branches_ok() -> pb.TxnRequest:
            # The same key in both branches of a nested txn is not a duplicate.
            inner = pb.TxnRequest(compare=[self.compare()])
            inner.success.add(request_put=pb.PutRequest(key=b"c", value=b"then"))
            inner.failure.add(request_put=pb.PutRequest(key=b"c", value=b"else"))
            t = pb.TxnRequest()
            t.success.add(request_txn=inner)
            t.failure.add(request_txn=inner)
            return t

        def too_many_ops() -> pb.TxnRequest:
            t = pb.TxnRequest()
            for _ in range(MAX_TXN_OPS + 1):
                t.success.add(request_range=pb.RangeRequest(key=b"a"))
            return t

        def too_many_compares() -> pb.TxnRequest:
            return pb.TxnRequest(
                compare=[pb.Compare(key=b"a", target=CompareTarget.VERSION, version=i)
                         for i in range(MAX_TXN_OPS + 1)]
            )

        def max_ops_ok() -> pb.TxnRequest:
            t = pb.TxnRequest()
            for _ in range(MAX_TXN_OPS):
                t.failure.add(request_range=pb.RangeRequest(key=b"b", range_end=b"\x00"))
            return t

        def empty_compare_key() -> pb.TxnRequest:
            return pb.TxnRequest(compare=[pb.Compare(target=CompareTarget.VERSION, version=1)])

        def empty_key_inside() -> pb.TxnRequest:
            t = pb.TxnRequest()
            t.success.add(request_range=pb.RangeRequest(key=b""))
            return t

        def txn_missing_ignore_value() -> pb.TxnRequest:
            t = pb.TxnRequest()
            t.success.add(request_put=pb.PutRequest(key=b"a/3", value=b"w"))
            t.success.add(request_put=pb.PutRequest(key=MISSING_KEY, ignore_value=True))
            return t

        def txn_too_large() -> pb.TxnRequest:
            t = pb.TxnRequest()
            for i, key in enumerate(KEYS):
                t.success.add(request_put=pb.PutRequest(key=key, value=bytes([65 + i]) * 9000))
            return t

        def read_at(revision: int, lease: int = 0) -> Callable[[], pb.TxnRequest]:
            def build() -> pb.TxnRequest:
                t = pb.TxnRequest()
                t.success.add(request_put=pb.PutRequest(key=b"a/1", value=b"t", lease=lease))
                inner = pb.TxnRequest()
                inner.success.add(request_range=pb.RangeRequest(key=b"a", revision=revision))
                t.success.add(request_txn=inner)
                return t
            return build

        def bad_sort(order: int, target: int) -> Factory:
            r = pb.RangeRequest(key=b"a", range_end=b"\x00")
            r.sort_order, r.sort_target = order, target  # values outside the enums
            # etcd 3.5.1 sorts nothing for an unknown order and crashes (a Go panic in the
            # request goroutine) on an unknown target; later 3.5 releases reject both.
            return lambda: [Op(OpKind.RANGE, r, f"invalid sort {order}/{target}",
                               expect=INVALID_SORT_OPTION)]

        return [
            put("empty key", key=b"", value=b"v"),
            put("ignore_value with a value", key=b"a", value=b"v", ignore_value=True),
            put("ignore_lease with a lease", key=b"a", lease=LEASE_IDS[0], ignore_lease=True),
            put("ignore_value on a missing key", key=MISSING_KEY, ignore_value=True),
            put("ignore_lease on a missing key", key=MISSING_KEY, ignore_lease=True),
            put("unknown lease", key=rng.choice(KEYS), value=b"v", lease=UNKNOWN_LEASE),
            put("larger than max-request-bytes", key=b"b",
                value=b"x" * (MAX_REQUEST_BYTES + 4096)),
            lambda: [Op(OpKind.RANGE, pb.RangeRequest(key=b"", range_end=b"z"), "empty key")],
            lambda: self._write(Op(OpKind.DELETE_RANGE, pb.DeleteRangeRequest(), "empty key")),
            bad_sort(7, SortTarget.KEY),
            bad_sort(SortOrder.ASCEND, 9),
            txn("two puts of one key", dup_put_put),
            txn("put inside a deleted range", dup_put_delete),
            txn("put in a nested txn of a key the outer one puts", dup_nested),
            txn("one key in both branches of a nested txn", nested_both_branches_ok),
            txn("too many ops", too_many_ops),
            txn("too many compares", too_many_compares),
            txn("exactly max-txn-ops", max_ops_ok),
            txn("compare with an empty key", empty_compare_key),
            txn("range with an empty key inside", empty_key_inside),
            txn("ignore_value on a missing key after a put", txn_missing_ignore_value),
            txn("larger than max-request-bytes", txn_too_large),
            txn("put, then a nested read at a future revision", read_at(10**6)),
            txn("put, then a nested read at revision 1 (compacted?)", read_at(1)),
            txn("unknown lease put and a future read: puts are checked first",
                read_at(10**6, UNKNOWN_LEASE)),
            lambda: [Op(OpKind.LEASE_GRANT, pb.LeaseGrantRequest(ID=LEASE_IDS[2],
                                                                 TTL=MAX_LEASE_TTL + 1),
                        "too large TTL")],
            lambda: [Op(OpKind.LEASE_GRANT, pb.LeaseGrantRequest(ID=LEASE_IDS[0], TTL=600),
                        "existing id")],
        ]

    def mandatory(self) -> list[Factory]:
        """Ops every script contains at least once, whatever the random draw."""
        every_rev = [(lambda k=k: self.op_range([k])) for k in RevKind]
        return [
            *self.invalid_factories(),
            *every_rev,
            *every_rev,  # again, typically after a compaction this time
            self.op_compact,
            self.op_compact,
            lambda: self.op_compact([RevKind.COMPACTED]),
            lambda: self.op_compact([RevKind.BELOW_COMPACTED]),
            lambda: self.op_compact([RevKind.FUTURE]),
            self.op_txn_read_after_write,
            self.op_short_lease,
            lambda: self.op_lease_revoke(UNKNOWN_LEASE),
            lambda: self.op_lease_ttl(UNKNOWN_LEASE),
            lambda: self.op_lease_ttl(LEASE_IDS[1]),
            lambda: self.op_keep_alive(UNKNOWN_LEASE),
            lambda: self.op_keep_alive(LEASE_IDS[1]),
            self.op_lease_leases,
            lambda: self.op_watch_create([RevKind.PAST]),
            lambda: self.op_watch_create([RevKind.BELOW_COMPACTED]),
            lambda: self.op_watch_create([RevKind.COMPACTED]),
            lambda: self.op_watch_create([RevKind.FUTURE]),
            lambda: self.op_watch_create([RevKind.LATEST]),
            self.op_negative_watch,
            self.op_watch_cancel,
            self.op_watch_cancel,
            self.op_watch_progress,
            self.op_watch_progress,
        ]

    def weighted(self) -> list[tuple[int, Factory]]:
        return [
            (24, self.op_put),
            (22, lambda: self.op_range()),
            (7, self.op_delete),
            (16, self.op_txn),
            (1, self.op_compact),
            (3, self.op_lease_grant),
            (2, lambda: self.op_lease_revoke()),
            (3, lambda: self.op_lease_ttl()),
            (1, self.op_lease_leases),
            (2, lambda: self.op_keep_alive()),
            (2, lambda: self.op_watch_create(
                [RevKind.LATEST, RevKind.PAST, RevKind.CURRENT]
                if self.rng.random() < 0.7 else None)),
            (1, self.op_watch_cancel),
            (1, self.op_watch_progress),
        ]

    def initial_watches(self) -> list[Op]:
        """Watchers opened before the first op: every shape at least once, spread over the
        streams. Watch ids are assigned per stream from 0, in creation order."""
        templates: list[tuple[pb.WatchCreateRequest, str]] = [
            (pb.WatchCreateRequest(key=b"a/", range_end=b"a0", prev_kv=True), "prefix, prev_kv"),
            (pb.WatchCreateRequest(key=b"a"), "single key"),
            (pb.WatchCreateRequest(key=b"b", range_end=b"\x00"), "from key"),
            (pb.WatchCreateRequest(key=b"\x00", range_end=b"\x00", prev_kv=True), "all, prev_kv"),
            (pb.WatchCreateRequest(key=b"", range_end=b"\x00", filters=[FilterType.NOPUT]),
             "empty key from key, NOPUT"),
            (pb.WatchCreateRequest(key=b"a", range_end=b"c", filters=[FilterType.NODELETE]),
             "span, NODELETE"),
            (pb.WatchCreateRequest(key=b"b/", range_end=b"b0", start_revision=1), "old start"),
            (pb.WatchCreateRequest(key=b"\x00", range_end=b"\x00", start_revision=30,
                                   prev_kv=True), "future start"),
            (pb.WatchCreateRequest(key=b"c", range_end=b"a"), "empty range"),
            (pb.WatchCreateRequest(key=b"b/1", watch_id=7), "explicit id"),
            (pb.WatchCreateRequest(key=b"b/2", watch_id=7), "explicit id again (duplicate)"),
            (pb.WatchCreateRequest(key=MISSING_KEY, prev_kv=True), "missing key"),
        ]
        self.rng.shuffle(templates)
        ops = []
        for i, (w, note) in enumerate(templates):
            stream = i % WATCH_STREAMS
            self.watch_creates[stream] += 1
            ops.append(Op(OpKind.WATCH_CREATE, w, note, stream=stream))
        # The duplicate id must come after its first use on the same stream.
        explicit = [op for op in ops if op.request.watch_id == 7]  # type: ignore[attr-defined]
        rest = [op for op in ops if op.request.watch_id != 7]  # type: ignore[attr-defined]
        first, second = sorted(explicit, key=lambda op: "again" in op.note)
        return [*rest, first, Op(OpKind.WATCH_CREATE, second.request, second.note,
                                 stream=first.stream)]


def generate(seed: int, min_ops: int = MIN_OPS) -> Script:
    """The script for `seed`: at least `min_ops` ops (some factories add two)."""
    gen = _Generator(seed)
    rng = gen.rng
    watches = gen.initial_watches()
    ops: list[Op] = [
        Op(OpKind.LEASE_GRANT, pb.LeaseGrantRequest(ID=LEASE_IDS[0], TTL=600), "warm-up"),
        Op(OpKind.LEASE_GRANT, pb.LeaseGrantRequest(ID=LEASE_IDS[1], TTL=3600), "warm-up"),
    ]
    while len(ops) < WARM_UP_OPS:
        ops.extend(gen.op_put())

    mandatory = gen.mandatory()
    rng.shuffle(mandatory)
    slots = range(len(ops), max(min_ops, len(ops) + len(mandatory)))
    positions = set(rng.sample(slots, len(mandatory)))
    weights = gen.weighted()
    pending = iter(mandatory)
    index = len(ops)
    while len(ops) < min_ops or index < slots.stop:
        if index in positions:
            ops.extend(next(pending)())
        else:
            factory = rng.choices([f for _, f in weights], [w for w, _ in weights])[0]
            ops.extend(factory())
        index += 1
    assert next(pending, None) is None, "every mandatory op was placed"
    return Script(seed, tuple(watches), tuple(ops))

"""A seeded script of etcd operations over a small key space, errors and watches included.

The same seed always gives the same script. Revisions that depend on what the server did (a
past one, the compacted one, a future one) are kept symbolic as a `RevSpec` and resolved by
the runner just before sending, from the revisions the reference server reported, so both
servers still receive byte-identical requests.

Every feature the brief lists is generated at least once per script ("mandatory" ops placed at
seeded positions); the rest of the script is drawn at random with weights.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from tests.e2e.diff.invalid import invalid_ops
from tests.e2e.diff.script import (
    KEYS,
    LEASE_IDS,
    LONG_TTLS,
    MIN_OPS,
    MISSING_KEY,
    PREFIXES,
    SHORT_LEASE,
    UNKNOWN_LEASE,
    VALUES,
    WARM_UP_OPS,
    WATCH_STREAMS,
    CompareResult,
    CompareTarget,
    FilterType,
    Op,
    OpKind,
    RevKind,
    RevSpec,
    Script,
    SortOrder,
    SortTarget,
    prefix_end,
)

# Requests that take a revision when they succeed (`approx_rev` counts them).
_WRITES = frozenset({OpKind.PUT, OpKind.DELETE_RANGE, OpKind.TXN, OpKind.LEASE_REVOKE})

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

    def op_big_txns(self) -> list[Op]:
        """Twice near max-request-bytes of values in one revision: with prev_kv, the second
        one's watch response is about twice that size (etcd fragments only above
        max-request-bytes + 512 KiB)."""
        ops = []
        for fill in (b"<", b">"):
            t = pb.TxnRequest()
            for key in KEYS[:7]:
                t.success.add(request_put=pb.PutRequest(key=key, value=fill * 8000))
            ops.extend(self._write(Op(OpKind.TXN, t, "big values in one revision")))
        return ops

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
        g = pb.LeaseGrantRequest(ID=SHORT_LEASE, TTL=self.rng.choice((-5, 0, 1)))
        return [
            Op(OpKind.LEASE_GRANT, g, f"TTL {g.TTL}: below the minimum"),
            *self.op_lease_revoke(SHORT_LEASE),
        ]

    def op_fixed(self, op: Op) -> list[Op]:
        return self._write(op) if op.kind in _WRITES else [op]

    def mandatory(self) -> list[Factory]:
        """Ops every script contains at least once, whatever the random draw."""
        every_rev = [(lambda k=k: self.op_range([k])) for k in RevKind]
        invalid = invalid_ops(self.rng.choice(KEYS), self.compare())
        return [
            *[(lambda op=op: self.op_fixed(op)) for op in invalid],
            *every_rev,
            *every_rev,  # again, typically after a compaction this time
            self.op_compact,
            self.op_compact,
            lambda: self.op_compact([RevKind.COMPACTED]),
            lambda: self.op_compact([RevKind.BELOW_COMPACTED]),
            lambda: self.op_compact([RevKind.FUTURE]),
            self.op_txn_read_after_write,
            self.op_big_txns,
            self.op_short_lease,
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
            (pb.WatchCreateRequest(key=b"\x00", range_end=b"\x00", prev_kv=True, fragment=True),
             "all, prev_kv, fragment"),
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

"""Histories that are correct by construction, for testing the checkers (and measuring them).

A plain sequential etcd (a dict, a revision counter, leases), written independently of
`etcd_model.py`, executes the operations of several concurrent clients at random points inside
their [call, return] intervals, so the history it records is linearizable; some operations time
out (their effect happens or not); serializable reads return a past revision no older than what
their client had seen; watchers receive every change from their start revision in revision
order, split into responses at random, with bookmarks and prev_kv.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field, replace

from tests.faults.history import (
    EventType,
    History,
    KeyValue,
    Operation,
    OpKind,
    Request,
    Response,
    WatchEvent,
    WatchRecord,
    WatchResponse,
)


@dataclass(slots=True)
class Reference:
    """The sequential specification, kept deliberately simple."""

    revision: int = 1
    store: dict[str, KeyValue] = field(default_factory=dict)
    leases: dict[int, set[str]] = field(default_factory=dict)
    snapshots: list[tuple[int, dict[str, KeyValue]]] = field(default_factory=list)
    events: list[tuple[int, WatchEvent]] = field(default_factory=list)  # (revision, event)
    now: float = 0.0  # when the current request takes effect
    made: dict[int, float] = field(default_factory=dict)  # revision -> when it was made

    def __post_init__(self) -> None:
        self.snapshots.append((self.revision, {}))

    def _commit(self, changed: list[WatchEvent]) -> None:
        if changed:
            self.revision += 1
            self.made[self.revision] = self.now
            self.events.extend((self.revision, e) for e in changed)
            self.snapshots.append((self.revision, dict(self.store)))

    def _put(self, key: str, value: str, lease: int) -> WatchEvent:
        rev = self.revision + 1
        old = self.store.get(key)
        if old is not None and old.lease:
            self.leases.get(old.lease, set()).discard(key)
        kv = KeyValue(key, value, rev, rev if old is None else old.create_revision,
                      1 if old is None else old.version + 1, lease)
        self.store[key] = kv
        if lease:
            self.leases[lease].add(key)
        return WatchEvent(EventType.PUT, kv, old)

    def _delete(self, key: str) -> WatchEvent:
        old = self.store.pop(key)
        if old.lease:
            self.leases.get(old.lease, set()).discard(key)
        gone = KeyValue(key, "", self.revision + 1, 0, 0)
        return WatchEvent(EventType.DELETE, gone, old)

    def at(self, revision: int) -> dict[str, KeyValue]:
        for rev, snap in reversed(self.snapshots):
            if rev <= revision:
                return snap
        raise AssertionError("revision before the first")

    def execute(self, req: Request, stale_revision: int = 0) -> tuple[Response | None, str]:
        """The response, or (None, error) for a definite failure."""
        k = req.kind
        if k in (OpKind.GET, OpKind.RANGE):
            rev = stale_revision if req.serializable else self.revision
            view = self.at(rev)
            if k == OpKind.GET:
                kvs = tuple(kv for key, kv in view.items() if key == req.key)
            else:
                end = req.range_end
                kvs = tuple(sorted(
                    (kv for key, kv in view.items()
                     if key >= req.key and (end == "\0" or key < end)),
                    key=lambda kv: kv.key,
                ))
            return Response(rev, kvs=kvs), ""
        if k == OpKind.PUT:
            if req.lease and req.lease not in self.leases:
                return None, "etcdserver: requested lease not found"
            self._commit([self._put(req.key, req.value, req.lease)])
            return Response(self.revision), ""
        if k == OpKind.DELETE:
            if req.key not in self.store:
                return Response(self.revision, deleted=0), ""
            self._commit([self._delete(req.key)])
            return Response(self.revision, deleted=1), ""
        if k == OpKind.CAS:
            cur = self.store.get(req.key)
            if (0 if cur is None else cur.mod_revision) != req.expected_mod_revision:
                return Response(self.revision, succeeded=False), ""
            self._commit([self._put(req.key, req.value, 0)])
            return Response(self.revision, succeeded=True), ""
        if k == OpKind.LEASE_GRANT:
            if req.lease in self.leases:
                return None, "etcdserver: lease already exists"
            self.leases[req.lease] = set()
            return Response(self.revision), ""
        assert k == OpKind.LEASE_REVOKE
        if req.lease not in self.leases:
            return None, "etcdserver: requested lease not found"
        keys = sorted(self.leases.pop(req.lease))
        self._commit([self._delete(key) for key in keys])
        return Response(self.revision), ""


@dataclass(frozen=True, slots=True)
class Shape:
    clients: int = 4
    operations: int = 200
    keys: int = 5
    unknown_rate: float = 0.03
    stale_rate: float = 0.1
    watchers: int = 2
    leases: bool = True


def generate(seed: int, shape: Shape = Shape()) -> History:
    rng = random.Random(seed)
    keys = tuple(f"key{i}" for i in range(shape.keys))
    ref = Reference()
    history = History(seed=seed, keys=keys)
    seen = [1] * shape.clients  # last revision each client observed
    # (linearization time, tiebreak, client, call, ret, request, unknown)
    pending: list[tuple[float, int, int, float, float, Request, bool]] = []
    next_lease = [1000]
    counter = [0]

    def schedule(client: int, now: float) -> None:
        if counter[0] >= shape.operations:
            return
        counter[0] += 1
        call = now + rng.uniform(0.0, 0.01)
        point = call + rng.uniform(0.0, 0.02)
        ret = point + rng.uniform(0.0, 0.02)
        unknown = rng.random() < shape.unknown_rate
        heapq.heappush(pending, (point, counter[0], client, call, ret,
                                 _request(rng, keys, shape, ref, next_lease, counter[0]), unknown))

    for c in range(shape.clients):
        schedule(c, 0.0)
    while pending:
        point, _n, client, call, ret, req, unknown = heapq.heappop(pending)
        ref.now = point
        stale = 0
        if req.serializable:
            stale = rng.randint(seen[client], ref.revision)
        if unknown:
            # It may have happened (at its point) or not; the client will never know.
            if req.kind not in (OpKind.GET, OpKind.RANGE) and rng.random() < 0.5:
                ref.execute(req)
            history.operations.append(Operation(client, call, math.inf, req, error="timeout"))
            schedule(client, point + 0.05)  # a new client would take over; keep it simple
            continue
        resp, error = ref.execute(req, stale)
        if resp is None:
            history.operations.append(
                Operation(client, call, ret, req, error=error, definite_failure=True))
        else:
            seen[client] = max(seen[client], resp.revision)
            history.operations.append(Operation(client, call, ret, req, resp))
        schedule(client, ret)
    history.operations.sort(key=lambda op: op.call)
    for w in range(shape.watchers):
        history.watches.append(_watch(rng, ref, shape.clients + w))
    return history


def _request(rng: random.Random, keys: tuple[str, ...], shape: Shape, ref: Reference,
             next_lease: list[int], n: int) -> Request:
    key = rng.choice(keys)
    roll = rng.random()
    stale = rng.random() < shape.stale_rate
    if roll < 0.25:
        return Request(OpKind.GET, key, serializable=stale)
    if roll < 0.35:
        return Request(OpKind.RANGE, keys[0], range_end="\0", serializable=stale)
    if roll < 0.6:
        return Request(OpKind.PUT, key, value=f"v{n}")
    if roll < 0.7:
        return Request(OpKind.DELETE, key)
    if roll < 0.85:
        cur = ref.store.get(key)
        expected = 0 if cur is None else cur.mod_revision
        if rng.random() < 0.3:
            expected = max(0, expected - rng.randint(1, 3))
        return Request(OpKind.CAS, key, value=f"v{n}", expected_mod_revision=expected)
    if not shape.leases:
        return Request(OpKind.PUT, key, value=f"v{n}")
    if roll < 0.9:
        next_lease[0] += 1
        return Request(OpKind.LEASE_GRANT, lease=next_lease[0])
    if roll < 0.95 and ref.leases:
        return Request(OpKind.PUT, key, value=f"v{n}", lease=rng.choice(sorted(ref.leases)))
    lease = rng.choice(sorted(ref.leases)) if ref.leases and rng.random() < 0.8 else 999
    return Request(OpKind.LEASE_REVOKE, lease=lease)


def _watch(rng: random.Random, ref: Reference, client: int) -> WatchRecord:
    """A watch on every key from a random revision, with prev_kv and bookmarks."""
    start = rng.randint(1, max(1, ref.revision))
    record = WatchRecord(client=client, key="key", range_end="kez", start_revision=start,
                         prev_kv=True, progress_notify=True)
    by_rev: dict[int, list[WatchEvent]] = {}
    for rev, e in ref.events:
        if rev >= start:
            by_rev.setdefault(rev, []).append(e)
    t = 0.0
    batch: list[WatchEvent] = []
    revs = sorted(by_rev)
    for n, rev in enumerate(revs):
        batch.extend(by_rev[rev])
        if n == len(revs) - 1 or rng.random() < 0.5:
            # delivered some time after the revision was made
            t = max(t, ref.made[rev]) + rng.uniform(0.0, 0.01)
            record.responses.append(WatchResponse(t, rev, tuple(batch)))
            batch = []
            if rng.random() < 0.2:
                record.responses.append(WatchResponse(t, rev, progress_notify=True))
    return record


def mutate(history: History, rng: random.Random) -> tuple[History, str] | None:
    """One change to a correct history that makes it wrong: (the broken history, what changed).

    Returns None when the chosen operation offers no such change (the caller tries another).
    """
    ops = history.operations
    i = rng.randrange(len(ops))
    op = ops[i]
    r = op.response
    if r is None:
        return None
    k = op.request.kind
    if k == OpKind.RANGE and not op.request.serializable and r.kvs and rng.random() < 0.4:
        gone = rng.randrange(len(r.kvs))
        new = replace(r, kvs=r.kvs[:gone] + r.kvs[gone + 1:])
        what = f"range lost {r.kvs[gone].key}"
    elif k == OpKind.GET and not op.request.serializable and r.kvs and rng.random() < 0.4:
        kv = r.kvs[0]
        older = [
            o for o in ops[:i]
            if o.request.kind == OpKind.PUT and o.request.key == kv.key and o.response is not None
            and o.response.revision < kv.mod_revision and o.ret < op.call
        ]
        if not older:
            return None
        o = older[-1]
        assert o.response is not None
        stale = KeyValue(kv.key, o.request.value, o.response.revision,
                         min(kv.create_revision, o.response.revision),
                         max(1, kv.version - 1), o.request.lease)
        new = replace(r, kvs=(stale,))
        what = "read an overwritten value"
    elif k in (OpKind.GET, OpKind.RANGE):
        if not r.kvs:
            return None
        kv = r.kvs[0]
        if rng.random() < 0.5:
            bad = replace(kv, value=kv.value + "-never-written")
            what = "read a value never written"
        else:
            bad = replace(kv, mod_revision=kv.mod_revision + 1000)
            what = "read a modification revision that never was"
        new = replace(r, kvs=(bad, *r.kvs[1:]))
    elif k == OpKind.PUT:
        new = replace(r, revision=r.revision + rng.choice((1, 2)))
        what = "put reported a revision gap"
    elif k == OpKind.CAS:
        new = replace(r, succeeded=not r.succeeded)
        what = "CAS outcome flipped"
    elif k == OpKind.DELETE:
        new = replace(r, deleted=1 - r.deleted)
        what = "delete count flipped"
    else:
        return None
    changed = list(ops)
    changed[i] = replace(op, response=new)
    return History(history.seed, history.keys, changed, history.watches), f"#{i}: {what}"

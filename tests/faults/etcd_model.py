"""etcd's KV semantics over a small key space, as a sequential model for the linearizability search.

The state is the whole key space at once, because revisions are global: every put, every delete
of an existing key, every successful compare-and-set and every revoke that deletes keys makes
exactly one new revision; a delete of a missing key, a failed compare-and-set, a lease grant and
a revoke of a lease with no keys do not. Responses carry the revision, and the model accepts an
operation only at the one point where the revision it reported is the store's: that is what
keeps the search small (an operation that returned revision r can only be placed right after
revision r - 1 was made).

Serializable (stale) reads are served by one member from whatever it has applied, so they are
checked the way etcd's robustness tests check their stale reads (validate/operations.go replays
the history to the read's revision): the read must equal the store exactly at its header
revision, that revision must already exist where the read is placed, and it must not be older
than what the same client had already observed (sessions are monotonic; checked statically in
`prepare`). To answer "the store at revision R" inside the search, the state keeps a log of
past snapshots (only when the history has stale reads, since it makes states bigger).

Operations whose outcome is unknown are applied blindly when placed, or never. Like etcd's
`patchLinearizableOperations`, a put whose unique value was later seen (in a read or a watch)
is known to have happened: it gets the revision it was seen at and a return time no later than
the first moment that revision was observed, so it must be placed, and placed there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from tests.faults.history import EventType, History, KeyValue, Operation, OpKind, Response
from tests.faults.linearizability import Item

# One key's current value: (value, create_revision, mod_revision, version, lease); None = absent.
Entry = tuple[str, int, int, int, int] | None


class Outcome(IntEnum):
    KNOWN = 0  # a response: the model must produce exactly it
    UNKNOWN = 1  # timed out: applied blindly (or never)
    LEASE_NOT_FOUND = 2  # a definite failure: the lease did not exist at that point


@dataclass(frozen=True, slots=True)
class Call:
    """One operation prepared for the search: indices instead of key strings."""

    index: int  # into History.operations
    kind: OpKind
    keys: tuple[int, ...]  # the key(s) it touches or reads, as indices into the key space
    value: str
    lease: int
    expected_mod_revision: int
    serializable: bool
    outcome: Outcome
    revision: int  # KNOWN: header revision
    succeeded: bool  # KNOWN CAS
    deleted: int  # KNOWN DELETE
    read: tuple[Entry, ...]  # KNOWN GET/RANGE: the entry of each of `keys` as returned


class Log:
    """Past snapshots, newest first: `revision` is when `kvs` became the store's contents.

    Compared by value (iteratively: the chain may be thousands long) with a hash computed once.
    """

    __slots__ = ("_hash", "kvs", "prev", "revision")

    def __init__(self, prev: Log | None, revision: int, kvs: tuple[Entry, ...]) -> None:
        assert prev is None or prev.revision < revision, "snapshots in revision order"
        self.prev, self.revision, self.kvs = prev, revision, kvs
        self._hash = hash((None if prev is None else prev._hash, revision, kvs))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        a: Log | None = self
        b = other
        while a is not None and isinstance(b, Log):
            if a is b:
                return True
            if a._hash != b._hash or a.revision != b.revision or a.kvs != b.kvs:
                return False
            a, b = a.prev, b.prev
        return a is None and b is None

    def at(self, revision: int) -> tuple[Entry, ...] | None:
        node: Log | None = self
        while node is not None and node.revision > revision:
            node = node.prev
        return None if node is None else node.kvs


@dataclass(frozen=True, slots=True)
class State:
    revision: int
    kvs: tuple[Entry, ...]  # per key index
    leases: frozenset[int]
    log: Log | None  # None unless the history has serializable reads


@dataclass(frozen=True, slots=True)
class Effect:
    """What applying a request did: the new state and, per changed key, (index, before, after)."""

    state: State
    changes: tuple[tuple[int, Entry, Entry], ...]


class EtcdModel:
    """The specification, plus two facts about the history that prune unknown writes.

    `made`: revisions that a known write reported creating. Exactly one write creates each
    revision, so an unknown write can never be the one that creates one of these.
    `highest`: the highest revision any known operation reported. An unknown put, delete or
    CAS that would create a revision above it can be moved after every known operation without
    changing any answer (nobody saw that revision), so the search never places one there.
    Without these the search would try every subset of the pending unknown writes at every
    point.
    """

    def __init__(
        self,
        n_keys: int,
        track_log: bool,
        revision: int = 1,
        made: frozenset[int] = frozenset(),
        highest: int | None = None,
        start: tuple[tuple[Entry, ...], frozenset[int]] | None = None,
    ) -> None:
        assert revision >= 1, "etcd's first revision is 1"
        self.n_keys = n_keys
        self.track_log = track_log
        self.first_revision = revision
        self.made = made
        self.highest = highest
        self.start = start  # contents and leases at `revision` (None: empty)

    def init(self) -> State:
        kvs: tuple[Entry, ...] = (None,) * self.n_keys
        leases: frozenset[int] = frozenset()
        if self.start is not None:
            kvs, leases = self.start
            assert len(kvs) == self.n_keys
        log = Log(None, self.first_revision, kvs) if self.track_log else None
        return State(self.first_revision, kvs, leases, log)

    def apply(self, s: State, c: Call) -> Effect:
        """The request's effect on `s` regardless of what was observed."""
        rev = s.revision + 1
        kind = c.kind
        if kind == OpKind.PUT or kind == OpKind.CAS:
            (k,) = c.keys
            old = s.kvs[k]
            if kind == OpKind.PUT and c.lease and c.lease not in s.leases:
                return Effect(s, ())  # "requested lease not found": no effect
            if kind == OpKind.CAS and (0 if old is None else old[2]) != c.expected_mod_revision:
                return Effect(s, ())
            lease = c.lease if kind == OpKind.PUT else 0
            new: Entry = (
                (c.value, rev, rev, 1, lease) if old is None else (c.value, old[1], rev, old[3] + 1, lease)
            )
            return self._write(s, ((k, old, new),), s.leases)
        if kind == OpKind.DELETE:
            (k,) = c.keys
            old = s.kvs[k]
            return Effect(s, ()) if old is None else self._write(s, ((k, old, None),), s.leases)
        if kind == OpKind.LEASE_GRANT:
            return Effect(State(s.revision, s.kvs, s.leases | {c.lease}, s.log), ())
        if kind == OpKind.LEASE_REVOKE:
            if c.lease not in s.leases:
                return Effect(s, ())
            leases = s.leases - {c.lease}
            gone = tuple((k, e, None) for k, e in enumerate(s.kvs) if e is not None and e[4] == c.lease)
            if not gone:
                return Effect(State(s.revision, s.kvs, leases, s.log), ())
            return self._write(s, gone, leases)
        return Effect(s, ())  # reads change nothing

    def _write(
        self, s: State, changes: tuple[tuple[int, Entry, Entry], ...], leases: frozenset[int]
    ) -> Effect:
        kvs = list(s.kvs)
        for k, _old, new in changes:
            kvs[k] = new
        rev = s.revision + 1
        frozen = tuple(kvs)
        log = Log(s.log, rev, frozen) if s.log is not None else None
        return Effect(State(rev, frozen, leases, log), changes)

    def step(self, s: State, c: Call) -> State | None:
        if c.outcome == Outcome.UNKNOWN:
            new = self.apply(s, c).state
            if new.revision != s.revision:
                if new.revision in self.made:
                    return None
                if (
                    self.highest is not None
                    and new.revision > self.highest
                    and c.kind != OpKind.LEASE_REVOKE
                ):
                    return None
            return new
        kind = c.kind
        if c.outcome == Outcome.LEASE_NOT_FOUND:
            return s if c.lease not in s.leases else None
        if kind == OpKind.GET or kind == OpKind.RANGE:
            if not c.serializable:
                if c.revision != s.revision:
                    return None
                kvs = s.kvs
                return s if all(kvs[k] == e for k, e in zip(c.keys, c.read, strict=True)) else None
            if c.revision > s.revision or s.log is None:
                return None
            past = s.log.at(c.revision)
            if past is None or any(past[k] != e for k, e in zip(c.keys, c.read, strict=True)):
                return None
            return s
        if kind == OpKind.LEASE_GRANT and c.lease in s.leases:
            return None  # etcd answers "lease already exists"
        if kind == OpKind.LEASE_REVOKE and c.lease not in s.leases:
            return None  # etcd answers "lease not found"
        if kind == OpKind.PUT and c.lease and c.lease not in s.leases:
            return None
        effect = self.apply(s, c)
        new = effect.state
        if new.revision != c.revision:
            return None
        if kind == OpKind.CAS and c.succeeded != bool(effect.changes):
            return None
        if kind == OpKind.DELETE and c.deleted != len(effect.changes):
            return None
        return new


# --- from a History to the search's items --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    keys: tuple[str, ...]  # the key space, sorted: index -> key
    items: list[Item[Call]]
    model: EtcdModel
    # Violations found without search: (the operations involved, why).
    static: list[tuple[tuple[int, ...], str]]
    # Unknown puts the history proves happened: operation index -> revision they were seen at.
    patched: dict[int, int]


READS = (OpKind.GET, OpKind.RANGE)
_RANGE_ALL = "\0"


def key_space(history: History) -> tuple[str, ...]:
    keys = set(history.keys)
    for op in history.operations:
        if op.request.kind in (OpKind.GET, OpKind.PUT, OpKind.DELETE, OpKind.CAS):
            keys.add(op.request.key)
        if op.response is not None:
            keys.update(kv.key for kv in op.response.kvs)
    for w in history.watches:
        for r in w.responses:
            keys.update(e.kv.key for e in r.events)
    return tuple(sorted(keys))


def in_range(key: str, start: str, end: str) -> bool:
    """etcd's range rule: end "" is the single key, "\\0" is every key >= start."""
    if not end:
        return key == start
    return key >= start and (end == _RANGE_ALL or key < end)


def entry_of(kv: KeyValue) -> Entry:
    return (kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


UNSEEN = "\0unseen"  # the value of an unknown write nobody ever read: which one it was is moot


def prepare(
    history: History,
    revision: int = 1,
    drop_unseen: bool = False,
    start: tuple[dict[str, KeyValue], frozenset[int]] | None = None,
    settle_s: float | None = None,
) -> Prepared:
    """The search's items for `history`.

    `drop_unseen`: leave out unknown puts/CAS whose value nobody ever saw (and unknown deletes
    and revokes without evidence), i.e. assume they never took effect. A linearization found
    that way is a valid linearization of the whole history (those writes "never happened"), so
    it proves OK; it cannot prove a violation.
    `settle_s`: likewise an assumption that can only prove OK: an unknown outcome takes effect
    within `settle_s` seconds of its call or never (a timed-out request is usually settled by
    the next election), which keeps it from being a candidate at every later point.
    """
    keys = tuple(sorted(set(key_space(history)) | set(start[0] if start else ())))
    index = {k: i for i, k in enumerate(keys)}
    static = _session_violations(history)
    if start is None:  # with a start state, values written before it have no writer here
        static += _read_violations(history)
    patched, patched_ret = _observed_puts(history)
    observed = _observed_values(history)
    evidenced = _unexplained_deletes(history) if drop_unseen else set()
    missing_leases = {op.request.lease for op in history.operations
                      if op.definite_failure and "lease not found" in op.error}
    has_stale = False
    used_leases = {
        op.request.lease
        for op in history.operations
        if op.request.kind != OpKind.LEASE_GRANT and op.request.lease
    }
    items: list[Item[Call]] = []
    for i, op in enumerate(history.operations):
        req = op.request
        if op.unknown and req.kind in READS:
            continue  # a read nobody saw constrains nothing
        if op.unknown and req.kind == OpKind.LEASE_GRANT and req.lease not in used_leases:
            continue  # a lease nobody used: whether it exists changes no answer
        if op.definite_failure:
            if "lease not found" not in op.error:
                continue  # took no effect and says nothing about the state
            outcome = Outcome.LEASE_NOT_FOUND
        else:
            outcome = Outcome.UNKNOWN if op.unknown else Outcome.KNOWN
        if req.kind in READS:
            ks = tuple(j for j, k in enumerate(keys) if in_range(k, req.key, req.range_end))
        elif req.kind in (OpKind.LEASE_GRANT, OpKind.LEASE_REVOKE):
            ks = ()
        else:
            ks = (index[req.key],)
        resp = op.response
        ret = op.ret
        value = req.value
        twin: tuple[object, ...] | None = None
        if op.unknown and i not in patched:
            if req.kind in (OpKind.PUT, OpKind.CAS) and (req.key, req.value) not in observed:
                if drop_unseen:
                    continue
                value = UNSEEN
            if drop_unseen and req.kind == OpKind.DELETE and req.key not in evidenced:
                continue
            if (drop_unseen and req.kind == OpKind.LEASE_REVOKE and not evidenced
                    and req.lease not in missing_leases):
                continue
            twin = (req.kind, req.key, value, req.lease, req.expected_mod_revision)
        if i in patched:
            outcome = Outcome.KNOWN
            resp = Response(revision=patched[i], succeeded=True)
            ret = max(op.call, patched_ret[i])
        read: tuple[Entry, ...] = ()
        if resp is not None and req.kind in READS:
            got = {kv.key: entry_of(kv) for kv in resp.kvs}
            stray = [k for k in got if k not in keys or index[k] not in ks]
            if stray or len(got) != len(resp.kvs):
                static.append(((i,), f"read returned keys outside its range or twice: {stray}"))
            read = tuple(got.get(keys[j]) for j in ks)
            has_stale = has_stale or req.serializable
        call = Call(
            index=i,
            kind=req.kind,
            keys=ks,
            value=value,
            lease=req.lease,
            expected_mod_revision=req.expected_mod_revision,
            serializable=req.serializable,
            outcome=outcome,
            revision=0 if resp is None else resp.revision,
            succeeded=True if resp is None else resp.succeeded,
            deleted=0 if resp is None else resp.deleted,
            read=read,
        )
        optional = False
        if settle_s is not None and outcome == Outcome.UNKNOWN:
            ret, optional = op.call + settle_s, True
        items.append(Item(op.call, ret, call, twin, optional))
    made: set[int] = set()
    for it in items:
        c = it.payload
        if c.outcome != Outcome.KNOWN:
            continue
        creates = (
            c.kind == OpKind.PUT
            or (c.kind == OpKind.CAS and c.succeeded)
            or (c.kind == OpKind.DELETE and c.deleted > 0)
        )
        if creates:
            made.add(c.revision)
    highest = max((it.payload.revision for it in items if it.payload.outcome == Outcome.KNOWN),
                  default=revision)
    static += _gaps(history, items, made, highest, revision)
    first = None
    if start is not None:
        first = (tuple(entry_of(start[0][k]) if k in start[0] else None for k in keys), start[1])
    model = EtcdModel(len(keys), has_stale, revision, frozenset(made), highest, first)
    return Prepared(keys, items, model, static, patched)


def _gaps(history: History, items: list[Item[Call]], made: set[int], highest: int,
          first: int) -> list[tuple[tuple[int, ...], str]]:
    """A revision nobody could have made, when no write's outcome is unknown."""
    fillers = {OpKind.PUT, OpKind.CAS, OpKind.DELETE, OpKind.LEASE_REVOKE}
    if any(it.payload.outcome == Outcome.UNKNOWN and it.payload.kind in fillers
           for it in items):
        return []
    revokes = {it.payload.revision for it in items
               if it.payload.kind == OpKind.LEASE_REVOKE and it.payload.outcome == Outcome.KNOWN}
    for gap in range(first + 1, highest + 1):
        if gap in made or gap in revokes:
            continue
        seen_by = min(
            (it.payload.index for it in items
             if it.payload.outcome == Outcome.KNOWN and it.payload.revision >= gap),
            key=lambda i: history.operations[i].ret,
        )
        return [((seen_by,), f"nobody made revision {gap} (no write's outcome is unknown), yet "
                             f"this operation saw revision {history.operations[seen_by].response.revision}"
                             if history.operations[seen_by].response else "")]
    return []


def _session_violations(history: History) -> list[tuple[tuple[int, ...], str]]:
    """A client never sees the revision go backwards, stale reads included."""
    found: list[tuple[tuple[int, ...], str]] = []
    by_client: dict[int, list[int]] = {}
    for i, op in enumerate(history.operations):
        by_client.setdefault(op.client, []).append(i)
    for client, idx in by_client.items():
        seen, seen_at = 0, -1
        for i in sorted(idx, key=lambda j: history.operations[j].call):
            op = history.operations[i]
            if op.response is None:
                continue
            if op.response.revision < seen:
                found.append(
                    ((seen_at, i), f"client {client} saw revision {op.response.revision} after it had "
                        f"seen {seen} (operation #{seen_at}): revisions went backwards")
                )
            if op.response.revision > seen:
                seen, seen_at = op.response.revision, i
    return found


def _read_violations(history: History) -> list[tuple[tuple[int, ...], str]]:
    """What reads and write revisions show without any search (values are unique per write)."""
    found: list[tuple[tuple[int, ...], str]] = []
    writers: dict[tuple[str, str], list[int]] = {}
    creator: dict[int, int] = {}
    for i, op in enumerate(history.operations):
        req, resp = op.request, op.response
        if req.kind in (OpKind.PUT, OpKind.CAS):
            writers.setdefault((req.key, req.value), []).append(i)
        if resp is None:
            continue
        creates = (req.kind == OpKind.PUT or (req.kind == OpKind.CAS and resp.succeeded)
                   or (req.kind == OpKind.DELETE and resp.deleted > 0))
        if creates:
            if resp.revision in creator:
                found.append(((creator[resp.revision], i),
                              f"two writes both made revision {resp.revision}"))
            creator.setdefault(resp.revision, i)
    for i, op in enumerate(history.operations):
        if op.response is None:
            continue
        for kv in op.response.kvs:
            ws = writers.get((kv.key, kv.value), [])
            if not ws:
                found.append(((i,), f"read {kv.key}={kv.value!r}, a value nobody wrote"))
                continue
            if not 0 < kv.create_revision <= kv.mod_revision <= op.response.revision:
                found.append(((i,), f"read {kv.key} with create/mod revisions {kv.create_revision}"
                                 f"/{kv.mod_revision} at header revision {op.response.revision}"))
            if kv.version < 1:
                found.append(((i,), f"read {kv.key} with version {kv.version}"))
            w = history.operations[ws[0]]
            if len(ws) == 1 and w.response is not None and w.response.revision != kv.mod_revision:
                found.append(((ws[0], i), f"read {kv.key}={kv.value!r} at mod_revision "
                              f"{kv.mod_revision}, but its write made revision {w.response.revision}"))
    return found


def _unexplained_deletes(history: History) -> set[str]:
    """Keys a watch saw deleted at a revision no acknowledged write made: unknown deletes or
    revokes there may have happened. (Without that evidence the quick search assumes not.)"""
    made = set()
    for op in history.operations:
        r = op.response
        if r is not None and op.request.kind in (OpKind.PUT, OpKind.CAS, OpKind.DELETE):
            made.add(r.revision)
    keys: set[str] = set()
    for w in history.watches:
        for resp in w.responses:
            for e in resp.events:
                if e.type == EventType.DELETE and e.kv.mod_revision not in made:
                    keys.add(e.kv.key)
    return keys


def _observed_values(history: History) -> set[tuple[str, str]]:
    """(key, value) pairs anybody read or was told about by a watch."""
    seen: set[tuple[str, str]] = set()
    for op in history.operations:
        if op.response is not None:
            seen.update((kv.key, kv.value) for kv in op.response.kvs)
    for w in history.watches:
        for r in w.responses:
            for e in r.events:
                seen.add((e.kv.key, e.kv.value))
                if e.prev_kv is not None:
                    seen.add((e.prev_kv.key, e.prev_kv.value))
    return seen


def _observed_puts(history: History) -> tuple[dict[int, int], dict[int, float]]:
    """Unknown puts/CAS whose unique value someone saw: (op -> revision, op -> latest return).

    The return bound is the first moment anybody observed a revision >= the put's: the put
    had been made by then.
    """
    writers: dict[tuple[str, str], list[int]] = {}
    for i, op in enumerate(history.operations):
        if op.request.kind in (OpKind.PUT, OpKind.CAS):
            writers.setdefault((op.request.key, op.request.value), []).append(i)
    seen: dict[tuple[str, str], int] = {}

    def saw(kvs: Iterable[KeyValue | None]) -> None:
        for kv in kvs:
            if kv is not None and kv.value:
                seen.setdefault((kv.key, kv.value), kv.mod_revision)

    for op in history.operations:
        if op.response is not None:
            saw(op.response.kvs)
    for w in history.watches:
        for r in w.responses:
            for e in r.events:
                saw((e.kv, e.prev_kv))
    # When was each revision first known to exist?
    observations: list[tuple[int, float]] = [
        (op.response.revision, op.ret) for op in history.operations if op.response is not None
    ]
    for w in history.watches:
        for r in w.responses:
            top = max([r.header_revision, *(e.kv.mod_revision for e in r.events)])
            observations.append((top, r.received))
    observations.sort(key=lambda o: -o[0])
    revision: dict[int, int] = {}
    ret: dict[int, float] = {}
    for kv, ops in writers.items():
        if len(ops) != 1 or kv not in seen:
            continue  # not unique: cannot tell which write it was
        (i,) = ops
        if not history.operations[i].unknown:
            continue
        r = seen[kv]
        revision[i] = r
        ret[i] = min((t for rev, t in observations if rev >= r), default=math.inf)
    return revision, ret


def describe(op: Operation, t0: float) -> str:
    """One operation, readably, with times relative to `t0`."""
    req = op.request
    args = {
        OpKind.GET: f"{req.key!r}",
        OpKind.RANGE: f"[{req.key!r}, {req.range_end!r})",
        OpKind.PUT: f"{req.key!r}={req.value!r}" + (f" lease={req.lease}" if req.lease else ""),
        OpKind.DELETE: f"{req.key!r}",
        OpKind.CAS: f"{req.key!r}={req.value!r} if mod_revision=={req.expected_mod_revision}",
        OpKind.LEASE_GRANT: f"lease={req.lease}",
        OpKind.LEASE_REVOKE: f"lease={req.lease}",
    }[req.kind]
    name = req.kind.value + ("(serializable)" if req.serializable else "")
    ret = "   ?   " if math.isinf(op.ret) else f"{op.ret - t0:7.3f}"
    if op.response is None:
        out = f"error {op.error!r}" + ("" if op.definite_failure else " (outcome unknown)")
    else:
        r = op.response
        out = f"rev={r.revision}"
        if req.kind == OpKind.CAS:
            out += f" succeeded={r.succeeded}"
        if req.kind == OpKind.DELETE:
            out += f" deleted={r.deleted}"
        if req.kind in READS:
            shown = ", ".join(
                f"{kv.key}={kv.value!r}@{kv.mod_revision}(c{kv.create_revision} v{kv.version}"
                + (f" l{kv.lease}" if kv.lease else "") + ")"
                for kv in r.kvs
            )
            out += f" kvs=[{shown}]"
    return f"[{op.call - t0:7.3f} .. {ret}] client {op.client}: {name} {args} -> {out}"


# --- the revisions a linearization made --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    key: str
    after: KeyValue | None  # None: deleted
    before: KeyValue | None  # None: did not exist


@dataclass(frozen=True, slots=True)
class Revision:
    """What one revision changed, in a found linearization."""

    revision: int
    operation: int  # index into History.operations
    changes: tuple[Change, ...]
    # The operation's effect was acknowledged (or proven by an observation), so the watch
    # checks may hold watches to it; an unknown write the search chose to place is not.
    certain: bool
    # Per change: no write of unknown outcome ever touched the key, so its create_revision,
    # version and previous value are the same in every linearization (checkable exactly).
    exact: tuple[bool, ...]


def replay(prepared: Prepared, order: Iterable[int], history: History) -> dict[int, Revision]:
    """Apply the linearization `order` (item indices) and record every revision it made.

    A key is "shaky" when any write of unknown outcome (not proven by an observation) touched
    or may have touched it, including those the search left out as never applied.
    """
    model = prepared.model
    state = model.init()
    keys = prepared.keys
    index = {k: i for i, k in enumerate(keys)}
    shaky: set[int] = set()
    for i, op in enumerate(history.operations):
        if not op.unknown or i in prepared.patched or op.request.kind in READS:
            continue
        if op.request.kind == OpKind.LEASE_REVOKE:
            shaky.update(range(len(keys)))
        elif op.request.key in index:
            shaky.add(index[op.request.key])
    made: dict[int, Revision] = {}
    for i in order:
        call = prepared.items[i].payload
        effect = model.apply(state, call)
        if effect.state.revision != state.revision:
            certain = call.outcome == Outcome.KNOWN
            changes = tuple(
                Change(keys[k], _kv(keys[k], after), _kv(keys[k], before))
                for k, before, after in effect.changes
            )
            made[effect.state.revision] = Revision(
                effect.state.revision, call.index, changes, certain,
                tuple(k not in shaky for k, _b, _a in effect.changes),
            )
        state = effect.state
    return made


def _kv(key: str, e: Entry) -> KeyValue | None:
    if e is None:
        return None
    value, create, mod, version, lease = e
    return KeyValue(key, value, mod, create, version, lease)

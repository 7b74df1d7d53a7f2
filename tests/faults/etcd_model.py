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

from dataclasses import dataclass
from enum import IntEnum

from tests.faults.history import KeyValue, OpKind

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


READS = (OpKind.GET, OpKind.RANGE)
_RANGE_ALL = "\0"


def in_range(key: str, start: str, end: str) -> bool:
    """etcd's range rule: end "" is the single key, "\\0" is every key >= start."""
    if not end:
        return key == start
    return key >= start and (end == _RANGE_ALL or key < end)


def entry_of(kv: KeyValue) -> Entry:
    return (kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)

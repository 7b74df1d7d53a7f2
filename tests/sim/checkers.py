"""Invariant checkers.  Each one is fed facts by the driver and raises Violation.

They know nothing about the network or the disk, so they can be unit-tested by feeding
them facts directly.  What each one checks is stated on the class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from etcdpy.raft import Entry, EntryType

from .kv import KVStore, Put, Versioned

TermOf = Callable[[int], int]


class Invariant(Enum):
    ELECTION_SAFETY = "at most one leader per term"
    COMMITTED_CHANGED = "committed entries never change or disappear"
    LEADER_COMPLETENESS = "a new leader holds every committed entry"
    STATE_MACHINE = "every node applies the same sequence"
    SNAPSHOT = "a snapshot holds exactly the committed prefix it claims"
    STALE_READ = "a ReadIndex read never returns a stale value"
    LIVENESS = "the cluster makes progress once faults heal"
    MEMBERSHIP = "a removed node or a learner never becomes leader"
    COMMIT_RULE = "a leader commits by counting replicas only entries of its own term"
    CORE_ERROR = "the core never fails an assertion or raises unexpectedly"
    READY_CONTRACT = "a Ready never holds a message to the node itself"


class Violation(Exception):
    def __init__(self, invariant: Invariant, detail: str) -> None:
        super().__init__(f"{invariant.name}: {invariant.value}: {detail}")
        self.invariant = invariant
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        # rebuilt from its fields when a seed's result comes back from a worker process
        return self.__class__, (self.invariant, self.detail)


@dataclass(frozen=True, slots=True)
class Committed:
    term: int
    type: EntryType
    data: bytes
    first_seen_by: int  # the node that first showed it to us as committed
    known_at_term: int  # that node's term then: the entry was committed in this term or before


class ElectionSafety:
    """At most one node is ever leader of a given term, over the whole run (crashes
    included: a node that restarts and wins the same term again is fine, another is not)."""

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}

    def on_leader(self, node: int, term: int) -> None:
        other = self.leaders.setdefault(term, node)
        if other != node:
            raise Violation(
                Invariant.ELECTION_SAFETY, f"nodes {other} and {node} both led term {term}"
            )


class CommitLog:
    """The global committed log: the first time any node shows us an entry as committed
    (its commit index covers it, or it applies it) we record it; every later sighting of
    that index, and every later write of that index into any node's log, must agree.

    Invariant: recorded indexes form the range 1..max_index with no gaps that matter to
    state_at() (state_at asserts it)."""

    def __init__(self) -> None:
        self.entries: dict[int, Committed] = {}
        self.max_index = 0
        self._last_put: dict[str, int] = {}  # key -> highest committed index that wrote it

    def record(self, node: int, e: Entry, at_term: int) -> None:
        seen = self.entries.get(e.index)
        if seen is None:
            self.entries[e.index] = Committed(e.term, e.type, e.data, node, at_term)
            self.max_index = max(self.max_index, e.index)
            put = Put.decode(e.data) if e.type == EntryType.NORMAL else None
            if put is not None and self._last_put.get(put.key, 0) < e.index:
                self._last_put[put.key] = e.index
            return
        if (seen.term, seen.type, seen.data) != (e.term, e.type, e.data):
            raise Violation(
                Invariant.COMMITTED_CHANGED,
                f"node {node} has {e.term}/{e.index} {e.data!r} at committed index {e.index}, "
                f"node {seen.first_seen_by} committed {seen.term}/{e.index} {seen.data!r}",
            )

    def check_overwrite(self, node: int, first_written: int, node_commit: int) -> None:
        """A node rewrites its log from first_written on: nothing it knew to be committed
        may be rewritten.  (A stale node may well hold other entries at indexes that are
        committed elsewhere: that is legal until it learns they are committed.)"""
        if first_written <= node_commit:
            raise Violation(
                Invariant.COMMITTED_CHANGED,
                f"node {node} rewrites its log from {first_written} on, "
                f"but it knew {node_commit} was committed",
            )

    def check_leader(self, node: int, term: int, first: int, last: int, term_of: TermOf) -> None:
        """Leader completeness: a leader of `term` holds every entry committed in an earlier
        term.  (A leader of an old term may turn up late, when a delayed vote arrives, and
        legally lack newer entries; entries at or below `first` - 1 are in its snapshot.)"""
        for i in range(first, self.max_index + 1):
            c = self.entries.get(i)
            if c is None or c.known_at_term >= term:
                continue
            have = term_of(i) if i <= last else None
            if have != c.term:
                raise Violation(
                    Invariant.LEADER_COMPLETENESS,
                    f"leader {node} of term {term} has term {have} at {i}, but "
                    f"{c.term}/{i} was committed by term {c.known_at_term}",
                )

    def term_at(self, index: int) -> int | None:
        c = self.entries.get(index)
        return None if c is None else c.term

    def last_put_index(self, key: str) -> int:
        return self._last_put.get(key, 0)

    def state_at(self, index: int) -> KVStore:
        """The KV state after applying the committed prefix 1..index."""
        kv = KVStore()
        for i in range(1, index + 1):
            c = self.entries.get(i)
            assert c is not None, f"committed log has a gap at {i}"
            if c.type == EntryType.NORMAL:
                kv.apply(i, c.data)
            else:
                kv.skip(i)
        return kv


class ApplyOrder:
    """Each node applies 1, 2, 3, ... (or resumes after a snapshot), and the entry it
    applies at index i is the globally committed entry i: so every node's applied
    sequence is a prefix of one global sequence."""

    def __init__(self, log: CommitLog) -> None:
        self.log = log
        self.applied: dict[int, int] = {}

    def restore(self, node: int, index: int) -> None:
        """The node (re)starts from a snapshot at index (0 for an empty one)."""
        self.applied[node] = index

    def on_apply(self, node: int, e: Entry, at_term: int) -> None:
        last = self.applied.get(node, 0)
        if e.index != last + 1:
            raise Violation(
                Invariant.STATE_MACHINE,
                f"node {node} applies index {e.index} right after {last}",
            )
        self.log.record(node, e, at_term)
        self.applied[node] = e.index


@dataclass(frozen=True, slots=True)
class PendingRead:
    node: int
    key: str
    issued_at: int  # virtual tick
    min_index: int  # highest index known committed anywhere when the read was issued
    min_key_index: int  # index of the latest committed put to key when the read was issued


class ReadChecker:
    """Linearizable ReadIndex reads.  When the read is issued we note the highest index
    any node knows to be committed, and the latest committed write to the key.  The
    ReadState's index must be at least that high, and the value served (after the node
    has applied up to the ReadState's index) must come from that write or a later one.

    Invariant: len(pending) <= capacity; the driver expires reads that are never answered.
    """

    def __init__(self, log: CommitLog, capacity: int = 64) -> None:
        self.log = log
        self.capacity = capacity
        self.pending: dict[bytes, PendingRead] = {}
        self.confirmed: dict[bytes, tuple[PendingRead, int]] = {}  # waiting for apply
        self.served = 0

    def can_issue(self) -> bool:
        return len(self.pending) + len(self.confirmed) < self.capacity

    def issue(self, ctx: bytes, node: int, key: str, now: int) -> None:
        assert self.can_issue() and ctx not in self.pending
        self.pending[ctx] = PendingRead(
            node, key, now, self.log.max_index, self.log.last_put_index(key)
        )

    def on_read_state(self, node: int, ctx: bytes, index: int) -> None:
        r = self.pending.get(ctx)
        if r is None or r.node != node:
            return  # expired, from before a crash, or a duplicate answer
        del self.pending[ctx]
        if index < r.min_index:
            raise Violation(
                Invariant.STALE_READ,
                f"read {ctx!r} on node {node} got read index {index}, but index "
                f"{r.min_index} was already committed when it was issued",
            )
        self.confirmed[ctx] = (r, index)

    def serve_ready(self, node: int, applied: int, get: dict[str, Versioned]) -> None:
        """Serve every confirmed read of node whose index the node has now applied."""
        done = [c for c, (r, i) in self.confirmed.items() if r.node == node and i <= applied]
        for ctx in done:
            r, _ = self.confirmed.pop(ctx)
            v = get.get(r.key)
            got = 0 if v is None else v.index
            if got < r.min_key_index:
                raise Violation(
                    Invariant.STALE_READ,
                    f"read {ctx!r} of {r.key} on node {node} returned the write at index "
                    f"{got}, but the write at {r.min_key_index} was committed before it",
                )
            self.served += 1

    def forget_node(self, node: int) -> None:
        """The node crashed: its clients' requests are gone."""
        for d in (self.pending, self.confirmed):
            for ctx in [c for c, v in d.items() if _node_of(v) == node]:
                del d[ctx]

    def expire(self, now: int, max_age: int) -> None:
        for ctx in [c for c, r in self.pending.items() if now - r.issued_at > max_age]:
            del self.pending[ctx]


def _node_of(v: PendingRead | tuple[PendingRead, int]) -> int:
    return v.node if isinstance(v, PendingRead) else v[0].node


class Membership:
    """A node becomes leader only while it is a voter in its own configuration, and a
    node that has applied its own removal never becomes leader again."""

    def __init__(self) -> None:
        self.retired: set[int] = set()

    def on_removed(self, node: int) -> None:
        self.retired.add(node)

    def on_leader(self, node: int, voters: tuple[int, ...]) -> None:
        if node in self.retired:
            raise Violation(Invariant.MEMBERSHIP, f"removed node {node} became leader")
        if node not in voters:
            raise Violation(
                Invariant.MEMBERSHIP, f"node {node} became leader while not a voter {voters}"
            )


def check_leader_commit(node: int, term: int, commit: int, term_at_commit: int) -> None:
    """Raft §5.4.2 (Figure 8), observed from outside: when a leader moves its commit index,
    the entry there is of the leader's own term.  The end-to-end checks catch the damage
    only when a later leader overwrites such an entry, which needs a rare schedule."""
    if term_at_commit != term:
        raise Violation(
            Invariant.COMMIT_RULE,
            f"leader {node} of term {term} commits {term_at_commit}/{commit} by counting",
        )


def check_snapshot(log: CommitLog, node: int, index: int, term: int, data: bytes) -> None:
    """A snapshot at index must carry the committed entry's term and the state of exactly
    the committed prefix 1..index."""
    if index == 0:
        return
    t = log.term_at(index)
    if t is None or t != term:
        raise Violation(
            Invariant.SNAPSHOT,
            f"node {node} got a snapshot at {term}/{index}, committed term there is {t}",
        )
    got = KVStore.decode(data)
    want = log.state_at(index)
    if got.applied != index or got.data != want.data:
        raise Violation(
            Invariant.SNAPSHOT, f"node {node}'s snapshot at {index} differs from the log"
        )

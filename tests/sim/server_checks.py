"""Invariants of the server layer, fed facts by server_cluster.py (the Raft-level ones --
election safety, one global apply sequence -- are reused from checkers.py).

Each checker states what it checks on the class and raises ServerViolation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb

from .server_node import NodeState


class ServerInvariant(Enum):
    STATE_AGREEMENT = "members at the same applied index hold the same state and revision"
    REVISION_STEP = "each write request raises the revision by exactly one, others not at all"
    DURABILITY = "an acknowledged write survives crashes; applied state never goes back"
    STALE_READ = "a linearizable read sees every write acknowledged before it started"
    LIVENESS = "the cluster makes progress once faults heal"


class ServerViolation(Exception):
    def __init__(self, invariant: ServerInvariant, detail: str) -> None:
        super().__init__(f"{invariant.name}: {invariant.value}: {detail}")
        self.invariant = invariant
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        # rebuilt from its fields when a seed's result comes back from a worker process
        return self.__class__, (self.invariant, self.detail)


class StateAgreement:
    """The first member seen at an applied index fixes (revision, compact revision, hash_kv)
    there; every other member at that index, and the same member after a restart or a
    snapshot install, must agree.  Invariant: len(seen) <= capacity (oldest forgotten)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.seen: dict[int, tuple[int, NodeState]] = {}

    def observe(self, node: int, st: NodeState) -> None:
        first = self.seen.get(st.applied)
        if first is None:
            if len(self.seen) >= self.capacity:
                del self.seen[min(self.seen)]
            self.seen[st.applied] = (node, st)
            return
        other, want = first
        if (want.revision, want.compact_revision, want.hash, want.leases) != (
            st.revision, st.compact_revision, st.hash, st.leases
        ):
            raise ServerViolation(
                ServerInvariant.STATE_AGREEMENT,
                f"at applied index {st.applied} node {node} has rev {st.revision} compact "
                f"{st.compact_revision} hash {st.hash:#x} leases {st.leases}, node {other} had "
                f"rev {want.revision} compact {want.compact_revision} hash {want.hash:#x} "
                f"leases {want.leases}",
            )


def header_revision(response: Any) -> int | None:
    """The revision a write-path response reports, None for responses without one."""
    if isinstance(response, pb.PutResponse | pb.DeleteRangeResponse | pb.TxnResponse |
                  pb.LeaseRevokeResponse):
        return int(response.header.revision)
    return None


def check_revision_steps(node: int, rev_before: int, rev_after: int,
                         results: list[tuple[int, Any]]) -> None:
    """Walk one apply batch's results in order: each response's revision is the previous
    one (it changed nothing) or one more (it wrote); a Put always writes, a DeleteRange
    writes exactly when it deleted something; the last one ends at the batch's revision."""
    rev = rev_before
    for request_id, response in results:
        h = header_revision(response)
        if h is None:
            continue
        wrote = h == rev + 1
        must = isinstance(response, pb.PutResponse) or (
            isinstance(response, pb.DeleteRangeResponse) and response.deleted > 0
        )
        may = must or isinstance(response, pb.TxnResponse | pb.LeaseRevokeResponse)
        if h not in (rev, rev + 1) or (must and not wrote) or (wrote and not may):
            raise ServerViolation(
                ServerInvariant.REVISION_STEP,
                f"node {node}: request {request_id} ({type(response).__name__}) reports "
                f"revision {h} after revision {rev}",
            )
        rev = h
    if rev != rev_after:
        raise ServerViolation(
            ServerInvariant.REVISION_STEP,
            f"node {node}: batch took the revision from {rev_before} to {rev_after}, but its "
            f"requests account for {rev}",
        )


@dataclass(frozen=True, slots=True)
class Acked:
    """A write whose result came back from the proposing member's apply."""

    index: int  # log index of its entry
    revision: int
    key: bytes
    value: bytes | None  # None: the key was deleted at revision


class AckedWrites:
    """Every acknowledged mutation, the newest per key, and the highest acknowledged
    index and revision.  Invariant: len(all) <= capacity (the driver bounds the writes)."""

    def __init__(self) -> None:
        self.last_by_key: dict[bytes, Acked] = {}
        self.all: list[Acked] = []
        self.max_index = 0
        self.max_revision = 0

    def ack(self, a: Acked) -> None:
        # Members apply in log order, but acknowledgements come from different members at
        # different times: keep the newest per key.
        prev = self.last_by_key.get(a.key)
        if prev is None or prev.revision < a.revision:
            self.last_by_key[a.key] = a
        self.all.append(a)
        self.max_index = max(self.max_index, a.index)
        self.max_revision = max(self.max_revision, a.revision)

    def check_present(self, node: int, read_at: Any, compact_rev: int, current_rev: int) -> None:
        """Every acknowledged write is in the node's history: read at its revision (unless
        compacted away), the key holds exactly what was written then."""
        for a in self.all:
            if a.revision > current_rev:
                raise ServerViolation(
                    ServerInvariant.DURABILITY,
                    f"node {node} is at revision {current_rev}, below the acknowledged write "
                    f"of {a.key!r} at revision {a.revision} (index {a.index})",
                )
            if a.revision <= compact_rev:
                continue
            resp: pb.RangeResponse = read_at(a.key, a.revision)
            got = resp.kvs[0] if resp.kvs else None
            ok = (got is None) if a.value is None else (
                got is not None and got.value == a.value and got.mod_revision == a.revision
            )
            if not ok:
                raise ServerViolation(
                    ServerInvariant.DURABILITY,
                    f"node {node}: {a.key!r} at revision {a.revision} reads {got}, but "
                    f"{'a delete' if a.value is None else a.value!r} was acknowledged there",
                )


@dataclass(frozen=True, slots=True)
class PendingRead:
    node: int
    key: bytes
    issued_at: int
    min_index: int  # highest index acknowledged when the read was issued
    min_revision: int  # highest revision acknowledged then
    last: Acked | None  # the latest acknowledged mutation of key then


class LinearReads:
    """ReadIndex then Range: the read index covers every acknowledged write, the response
    revision is at least every acknowledged revision, and the key's value is no older than
    its latest acknowledged mutation.  Invariant: pending + confirmed <= capacity."""

    def __init__(self, acked: AckedWrites, capacity: int = 64) -> None:
        self.acked = acked
        self.capacity = capacity
        self.pending: dict[bytes, PendingRead] = {}
        self.confirmed: dict[bytes, tuple[PendingRead, int]] = {}
        self.served = 0

    def can_issue(self) -> bool:
        return len(self.pending) + len(self.confirmed) < self.capacity

    def issue(self, ctx: bytes, node: int, key: bytes, now: int) -> None:
        assert self.can_issue() and ctx not in self.pending
        a = self.acked
        self.pending[ctx] = PendingRead(node, key, now, a.max_index, a.max_revision,
                                        a.last_by_key.get(key))

    def on_read_state(self, node: int, ctx: bytes, index: int) -> None:
        r = self.pending.get(ctx)
        if r is None or r.node != node:
            return
        del self.pending[ctx]
        if index < r.min_index:
            raise ServerViolation(
                ServerInvariant.STALE_READ,
                f"read {ctx!r} on node {node}: read index {index} below acknowledged "
                f"index {r.min_index}",
            )
        self.confirmed[ctx] = (r, index)

    def serve(self, node: int, applied: int, range_latest: Any) -> None:
        done = [c for c, (r, i) in self.confirmed.items() if r.node == node and i <= applied]
        for ctx in done:
            r, _ = self.confirmed.pop(ctx)
            resp: pb.RangeResponse = range_latest(r.key)
            rev = resp.header.revision
            got = resp.kvs[0] if resp.kvs else None
            stale = rev < r.min_revision
            if r.last is not None and got is not None:
                stale = stale or got.mod_revision < r.last.revision or (
                    r.last.value is None and got.mod_revision == r.last.revision
                )
            if stale:
                raise ServerViolation(
                    ServerInvariant.STALE_READ,
                    f"read {ctx!r} of {r.key!r} on node {node} saw revision {rev}, "
                    f"mod revision {got.mod_revision if got else None}; acknowledged before "
                    f"it: revision {r.min_revision}, key's last {r.last}",
                )
            self.served += 1

    def forget_node(self, node: int) -> None:
        for ctx in [c for c, r in self.pending.items() if r.node == node]:
            del self.pending[ctx]
        for ctx in [c for c, (r, _) in self.confirmed.items() if r.node == node]:
            del self.confirmed[ctx]

    def expire(self, now: int, max_age: int) -> None:
        for ctx in [c for c, r in self.pending.items() if now - r.issued_at > max_age]:
            del self.pending[ctx]

"""Cutting a failing etcd history down to the part that fails.

Every write of a run reports a revision, so dropping any write leaves a gap that would fail by
itself: naive delta debugging invents violations. Two honest reductions are used instead.

* A revision window [lo, hi]. If every revision below lo was made by an acknowledged write, the
  store at lo - 1 is fully determined (replay those writes in revision order), so the search
  can start there; operations about revisions above hi are left out. If the window fails on its
  own, the whole history fails: any linearization of the whole, cut at revision lo - 1, would be
  one of the window.
* Relaxation inside the window: forgetting a read, or treating an acknowledged write's outcome
  as unknown, only allows more; if the window still fails, the rest is contradictory by itself.

Each trial is a search with a short budget; a trial that runs out of time counts as "does not
fail" (nothing unproven is ever shown as the failure).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from tests.faults import etcd_model, etcd_prepare
from tests.faults.history import History, KeyValue, Operation, OpKind
from tests.faults.linearizability import Verdict, check

IGNORED = "(outcome ignored while shrinking)"
_PER_TRIAL_S = 1.0


@dataclass(frozen=True, slots=True)
class Window:
    history: History  # the operations kept (some relaxed)
    lo: int  # the search starts from the store at lo - 1
    start: tuple[dict[str, KeyValue], frozenset[int]]


def _creates(op: Operation) -> bool:
    r = op.response
    if r is None:
        return False
    k = op.request.kind
    return k == OpKind.PUT or (k == OpKind.CAS and r.succeeded) or (
        k == OpKind.DELETE and r.deleted > 0)


def _revoke_made(history: History) -> dict[int, int]:
    """Revisions that only a known revoke can have made: revision -> lease.

    Only when no write's outcome is unknown: then a revision no known write made, reported by
    a revoke, was made by that revoke (deleting its keys).
    """
    writes = (OpKind.PUT, OpKind.CAS, OpKind.DELETE, OpKind.LEASE_REVOKE)
    if any(op.unknown and op.request.kind in writes for op in history.operations):
        return {}
    made = {op.response.revision for op in history.operations
            if _creates(op) and op.response is not None}
    return {op.response.revision: op.request.lease for op in history.operations
            if op.response is not None and op.request.kind == OpKind.LEASE_REVOKE
            and op.response.revision not in made}


def _determined_below(history: History) -> int:
    """The highest lo such that every revision in [2, lo - 1] was made by a known operation."""
    made = {op.response.revision for op in history.operations
            if _creates(op) and op.response is not None}
    made |= set(_revoke_made(history))
    lo = 2
    while lo in made:
        lo += 1
    return lo


def start_state(history: History, lo: int) -> tuple[dict[str, KeyValue], frozenset[int]]:
    """The store and live leases at revision lo - 1 (all its revisions made by known writes)."""
    store: dict[str, KeyValue] = {}
    writes = sorted((op for op in history.operations
                     if _creates(op) and op.response is not None and op.response.revision < lo),
                    key=lambda op: op.response.revision if op.response else 0)
    leases: set[int] = set()
    lease_ops = sorted(
        (op for op in history.operations if op.response is not None
         and op.request.kind in (OpKind.LEASE_GRANT, OpKind.LEASE_REVOKE)
         and op.response.revision < lo - 1),
        key=lambda op: op.response.revision if op.response else 0)
    for op in lease_ops:
        if op.request.kind == OpKind.LEASE_GRANT:
            leases.add(op.request.lease)
        else:  # below `lo` no revoke deleted keys: it would have made a revision
            leases.discard(op.request.lease)
    revokes = {rev: lease for rev, lease in _revoke_made(history).items() if rev < lo}
    steps: list[tuple[int, Operation | None]] = [
        (op.response.revision if op.response else 0, op) for op in writes]
    steps += [(rev, None) for rev in revokes]
    for rev, op in sorted(steps, key=lambda s: s[0]):
        if op is None:  # a revoke that made this revision: its keys go
            for key in [k for k, kv in store.items() if kv.lease == revokes[rev]]:
                del store[key]
            continue
        req = op.request
        old = store.get(req.key)
        if req.kind == OpKind.DELETE:
            store.pop(req.key, None)
            continue
        lease = req.lease if req.kind == OpKind.PUT else 0
        store[req.key] = KeyValue(req.key, req.value, rev,
                                  rev if old is None else old.create_revision,
                                  1 if old is None else old.version + 1, lease)
    return store, frozenset(leases)


def _window_ops(history: History, lo: int, hi: int) -> list[Operation]:
    kept: list[Operation] = []
    for op in history.operations:
        r = op.response
        if r is None:
            # A "lease not found" failure is left out: its lease may have been revoked by an
            # operation outside the window (forgetting an observation is always honest).
            if op.unknown:
                kept.append(op)
            continue
        if op.request.kind in (OpKind.LEASE_GRANT, OpKind.LEASE_REVOKE):
            if lo - 1 <= r.revision <= hi:
                kept.append(op)
            continue
        if _creates(op):
            if lo <= r.revision <= hi:
                kept.append(op)
        elif lo - 1 <= r.revision <= hi:
            kept.append(op)
    return kept


def _fails(ops: list[Operation], history: History, lo: int,
           start: tuple[dict[str, KeyValue], frozenset[int]], deadline: float) -> bool:
    sub = History(history.seed, history.keys, ops, [])
    prepared = etcd_prepare.prepare(sub, revision=lo - 1, start=start)
    if prepared.static:
        return True
    trial = min(deadline, time.monotonic() + _PER_TRIAL_S)
    return check(prepared.items, prepared.model, trial).verdict == Verdict.ILLEGAL


def relax(op: Operation) -> Operation | None:
    if op.request.kind in etcd_model.READS or op.definite_failure:
        return None
    if op.unknown:
        return op
    return replace(op, ret=math.inf, response=None, error=IGNORED)


def shrink(history: History, deadline: float) -> Window:
    """A small window of `history` that still fails (the whole history if nothing smaller)."""
    ops = [op for op in history.operations if op.response is not None or op.unknown
           or "lease not found" in op.error]
    top = max((op.response.revision for op in ops if op.response is not None), default=1)
    cap = _determined_below(history)
    empty: tuple[dict[str, KeyValue], frozenset[int]] = ({}, frozenset())
    if not _fails(_window_ops(history, 2, top), history, 2, empty, deadline):
        return Window(history, 2, empty)
    # Smallest hi that fails from the beginning, then the largest lo that still fails.
    lo_rev, hi_rev = 2, top
    a, b = 2, top
    while a < b and time.monotonic() < deadline:
        mid = (a + b) // 2
        if _fails(_window_ops(history, 2, mid), history, 2, empty, deadline):
            b = mid
        else:
            a = mid + 1
    hi_rev = b
    a, b = 2, min(cap, hi_rev)
    while a < b and time.monotonic() < deadline:
        mid = (a + b + 1) // 2
        if _fails(_window_ops(history, mid, hi_rev), history, mid, start_state(history, mid),
                  deadline):
            a = mid
        else:
            b = mid - 1
    lo_rev = a
    start = start_state(history, lo_rev) if lo_rev > 2 else empty
    kept = _window_ops(history, lo_rev, hi_rev)
    # Relax single operations, latest first, while the window still fails.
    for i in reversed(range(len(kept))):
        if time.monotonic() >= deadline:
            break
        weaker = relax(kept[i])
        if weaker is kept[i]:
            continue
        trial = kept[:i] + ([weaker] if weaker is not None else []) + kept[i + 1:]
        if _fails(trial, history, lo_rev, start, deadline):
            kept = trial
    return Window(History(history.seed, history.keys, kept, []), lo_rev, start)

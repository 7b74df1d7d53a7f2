"""From a recorded History to the search's items, and from a linearization back to revisions.

`prepare` turns each operation into a `Call` for `EtcdModel` (keys as indices, the response as
the values the model must reproduce), leaves out what constrains nothing (reads that timed out,
failures that took no effect), promotes unknown writes proven by observations (see
`etcd_evidence`), and sets the pruning facts of the model. `replay` applies a found
linearization and records what every revision changed, for the watch checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from tests.faults import etcd_evidence as evidence
from tests.faults.etcd_model import (
    READS,
    Call,
    Entry,
    EtcdModel,
    Outcome,
    entry_of,
    in_range,
)
from tests.faults.history import History, KeyValue, Operation, OpKind, Response
from tests.faults.linearizability import Item


@dataclass(frozen=True, slots=True)
class Prepared:
    keys: tuple[str, ...]  # the key space, sorted: index -> key
    items: list[Item[Call]]
    model: EtcdModel
    # Violations found without search: (the operations involved, why).
    static: list[evidence.Finding]
    # Unknown puts the history proves happened: operation index -> revision they were seen at.
    patched: dict[int, int]


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
    static = evidence.session_violations(history)
    if start is None:  # with a start state, values written before it have no writer here
        static += evidence.read_violations(history)
    patched, patched_ret = evidence.observed_puts(history)
    observed = evidence.observed_values(history)
    evidenced = evidence.unexplained_deletes(history) if drop_unseen else set()
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
    static += evidence.gaps(history, items, made, highest, revision)
    first = None
    if start is not None:
        first = (tuple(entry_of(start[0][k]) if k in start[0] else None for k in keys), start[1])
    model = EtcdModel(len(keys), has_stale, revision, frozenset(made), highest, first)
    return Prepared(keys, items, model, static, patched)


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

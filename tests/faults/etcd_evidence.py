"""What an etcd history shows without any search.

Values are unique per write, so a read names its write; every acknowledged write names its
revision. From that alone: findings that are violations by themselves (a value nobody wrote,
two writes making one revision, a revision nobody could have made, a client seeing revisions go
backwards), and evidence about writes whose outcome is unknown (a value someone saw proves its
write happened, and when).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tests.faults.etcd_model import Call, Outcome
from tests.faults.history import EventType, History, KeyValue, OpKind
from tests.faults.linearizability import Item

Finding = tuple[tuple[int, ...], str]  # (the operations involved, why)


def gaps(history: History, items: list[Item[Call]], made: set[int], highest: int,
          first: int) -> list[Finding]:
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
        seen_rev, seen_by = min(
            ((it.payload.revision, it.payload.index) for it in items
             if it.payload.outcome == Outcome.KNOWN and it.payload.revision >= gap),
            key=lambda ri: history.operations[ri[1]].ret,
        )
        why = (f"nobody made revision {gap} (no write's outcome is unknown), yet this operation "
               f"saw revision {seen_rev}")
        return [((seen_by,), why)]
    return []


def session_violations(history: History) -> list[Finding]:
    """A client never sees the revision go backwards, stale reads included."""
    found: list[Finding] = []
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


def read_violations(history: History) -> list[Finding]:
    """What reads and write revisions show without any search (values are unique per write)."""
    found: list[Finding] = []
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


def unexplained_deletes(history: History) -> set[str]:
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


def observed_values(history: History) -> set[tuple[str, str]]:
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


def observed_puts(history: History) -> tuple[dict[int, int], dict[int, float]]:
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

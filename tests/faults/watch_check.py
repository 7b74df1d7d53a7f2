"""etcd's watch guarantees, checked on every recorded watch stream.

Each stream is checked on its own (ordered, unique, atomic within the stream, events match the
watch's key range, resumable: it starts where it was asked to, bookmarkable: nothing at or below
a progress notification's revision arrives after it) and against the revisions the
linearizability search found (reliable: every change to a watched key between the watch's start
and the last revision it heard of was delivered, complete per revision; each event is exactly
the change that revision made; prev_kv is the key's previous value). Revisions made by writes
whose outcome is unknown were placed by the search by choice, so they are not held against a
watch. Streams are also compared with each other: two watches never disagree about a revision.

A watch canceled by compaction (it says so with `compact_revision`) is fine; nothing after a
cancellation is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tests.faults.etcd_model import in_range
from tests.faults.etcd_prepare import Revision
from tests.faults.history import EventType, History, KeyValue, WatchEvent, WatchRecord


@dataclass(frozen=True, slots=True)
class WatchViolation:
    guarantee: str  # ordered / unique / atomic / reliable / resumable / bookmarkable / prev_kv /
    #                 event / filter / consistent
    watch: int  # index into History.watches
    detail: str
    revision: int = 0  # where in the stream it happened (for showing the neighbourhood)


def _event_text(e: WatchEvent) -> str:
    kv = e.kv
    if e.type == EventType.DELETE:
        return f"DELETE {kv.key}@{kv.mod_revision}"
    return f"PUT {kv.key}={kv.value!r}@{kv.mod_revision}(c{kv.create_revision} v{kv.version})"


def _delivered(w: WatchRecord) -> list[tuple[int, WatchEvent]]:
    """(response number, event) for every event until a cancellation."""
    out: list[tuple[int, WatchEvent]] = []
    for n, r in enumerate(w.responses):
        out.extend((n, e) for e in r.events)
        if r.canceled:
            break
    return out


def check_stream(w: WatchRecord, index: int) -> list[WatchViolation]:
    """The guarantees one stream can be judged on by itself."""
    found: list[WatchViolation] = []

    at = [0]  # the revision being looked at, for the report

    def bad(guarantee: str, detail: str) -> None:
        found.append(WatchViolation(guarantee, index, detail, at[0]))

    last = 0  # highest event revision so far
    last_response_rev = 0  # highest revision in an earlier response
    bookmark = 0
    seen: set[tuple[int, str]] = set()
    first = True
    for n, r in enumerate(w.responses):
        revs = [e.kv.mod_revision for e in r.events]
        at[0] = revs[0] if revs else r.header_revision
        if revs != sorted(revs):
            bad("ordered", f"response #{n} has events out of revision order: {revs}")
        for e in r.events:
            rev = e.kv.mod_revision
            at[0] = rev
            if not in_range(e.kv.key, w.key, w.range_end):
                bad("filter", f"response #{n}: {_event_text(e)} is outside the watched range")
            if (rev, e.kv.key) in seen:
                bad("unique", f"response #{n}: {_event_text(e)} was delivered before")
            elif rev == last_response_rev:
                bad("atomic", f"response #{n}: revision {rev} was split across responses")
            seen.add((rev, e.kv.key))
            if rev < last:
                bad("ordered", f"response #{n}: {_event_text(e)} after revision {last}")
            if rev <= bookmark:
                bad("bookmarkable",
                    f"response #{n}: {_event_text(e)} after a progress notification at {bookmark}")
            if first and w.start_revision and rev < w.start_revision:
                bad("resumable",
                    f"first event {_event_text(e)} is before the start revision {w.start_revision}")
            first = False
            last = max(last, rev)
        if r.events:
            last_response_rev = max(revs)
        if r.progress_notify and not r.events:
            at[0] = r.header_revision
            if r.header_revision < last:
                bad("bookmarkable", f"response #{n}: progress notification at "
                    f"{r.header_revision} after an event at {last}")
            bookmark = max(bookmark, r.header_revision)
        if r.canceled:
            break
    return found


def _span(w: WatchRecord) -> tuple[int, int]:
    """[lo, hi]: the revisions this watch promised to deliver in full (lo > hi: none)."""
    events = _delivered(w)
    if w.start_revision:
        lo = w.start_revision
    elif w.responses and not w.responses[0].events and not w.responses[0].progress_notify:
        lo = w.responses[0].header_revision + 1  # the "created" response: from now on
    elif events:
        lo = events[0][1].kv.mod_revision
    else:
        return 1, 0
    hi = max((e.kv.mod_revision for _n, e in events), default=0)
    for r in w.responses:
        if r.progress_notify and not r.events:
            hi = max(hi, r.header_revision)
        if r.canceled:
            if r.compact_revision:
                hi = min(hi, r.compact_revision - 1)
            break
    return lo, hi


def _own_fields(kv: KeyValue) -> KeyValue:
    """The fields one write decides (not create_revision/version, which depend on history)."""
    return replace(kv, create_revision=0, version=0)


def _same_kv(got: KeyValue, want: KeyValue, deleted: bool) -> bool:
    if deleted:
        return got.key == want.key and got.mod_revision == want.mod_revision
    return got == want


def check_against(w: WatchRecord, index: int, made: dict[int, Revision]) -> list[WatchViolation]:
    """The stream against the revisions of a found linearization."""
    found: list[WatchViolation] = []

    at = [0]  # the revision being looked at, for the report

    def bad(guarantee: str, detail: str) -> None:
        found.append(WatchViolation(guarantee, index, detail, at[0]))

    by_rev: dict[int, list[WatchEvent]] = {}
    for _n, e in _delivered(w):
        by_rev.setdefault(e.kv.mod_revision, []).append(e)
    top = max(made, default=0)
    for rev, events in by_rev.items():
        at[0] = rev
        truth = made.get(rev)
        if truth is None:
            if rev <= top:
                bad("event", f"events at revision {rev}, which no write made: "
                    + ", ".join(map(_event_text, events)))
            continue
        if not truth.certain:
            continue
        want = {c.key: c for c in truth.changes if in_range(c.key, w.key, w.range_end)}
        for e in events:
            c = want.get(e.kv.key)
            deleted = e.type == EventType.DELETE
            expected = None if c is None else (c.after if c.after is not None else c.before)
            if c is None or (c.after is None) != deleted or expected is None:
                bad("event", f"{_event_text(e)}: revision {rev} made no such change "
                    f"(it was operation #{truth.operation})")
                continue
            if deleted:
                want_kv = KeyValue(c.key, "", rev, 0, 0)
            else:
                assert c.after is not None
                want_kv = c.after
            exact = truth.exact[[ch.key for ch in truth.changes].index(c.key)]
            if not exact:  # only what the write itself determines
                got, want_kv = _own_fields(e.kv), _own_fields(want_kv)
            else:
                got = e.kv
            if not _same_kv(got, want_kv, deleted):
                bad("event", f"{_event_text(e)}: revision {rev} wrote {want_kv}")
            if w.prev_kv and exact and e.prev_kv != c.before:
                bad("prev_kv", f"{_event_text(e)}: prev_kv {e.prev_kv}, the key was {c.before}")
    lo, hi = _span(w)
    for rev in range(lo, hi + 1):
        at[0] = rev
        truth = made.get(rev)
        if truth is None or not truth.certain:
            continue
        want_keys = {c.key for c in truth.changes if in_range(c.key, w.key, w.range_end)}
        got_keys = {e.kv.key for e in by_rev.get(rev, [])}
        missing = want_keys - got_keys
        if missing and got_keys:
            bad("atomic", f"revision {rev} delivered without {sorted(missing)}")
        elif missing:
            bad("reliable", f"revision {rev} (operation #{truth.operation}, changed "
                f"{sorted(missing)}) was not delivered between {lo} and {hi}")
    return found


def check_consistent(history: History) -> list[WatchViolation]:
    """No two watches disagree about what a revision did to a key."""
    found: list[WatchViolation] = []
    first: dict[tuple[int, str], tuple[int, WatchEvent]] = {}
    for i, w in enumerate(history.watches):
        for _n, e in _delivered(w):
            key = (e.kv.mod_revision, e.kv.key)
            if key not in first:
                first[key] = (i, e)
                continue
            j, other = first[key]
            if (other.type, other.kv) != (e.type, e.kv):
                found.append(WatchViolation(
                    "consistent", i,
                    f"{_event_text(e)} but watch {j} got {_event_text(other)}"))
    return found


def check_watches(history: History, made: dict[int, Revision] | None) -> list[WatchViolation]:
    """Every violation found; `made` None when no linearization is available."""
    found: list[WatchViolation] = []
    for i, w in enumerate(history.watches):
        found.extend(check_stream(w, i))
        if made is not None:
            found.extend(check_against(w, i, made))
    found.extend(check_consistent(history))
    return found

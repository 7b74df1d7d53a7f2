"""Per-key revision history with generations, and etcd's keyIndex rules on it.

A key's history is its ascending list of revisions, each either a put or a
tombstone.  A tombstone closes the key's current *generation*; the next put opens a
new one with a fresh create revision and version 1.  Generations are therefore not
stored separately: they are the runs of puts ended by a tombstone.  This is what lets
the LMDB index (``index.py``) keep one small record per (key, revision) and append a
revision with a single O(log n) put.

Worked example (the one etcd documents for its keyIndex, told again here).  Key
``foo`` is put at 1, put at 2, deleted at 3, put at 4 and deleted at 5.  Its
generations, oldest first, are ``{1, 2, 3(t)}``, ``{4, 5(t)}`` and an empty current
one.  Compacting keeps, for each key, only the newest revision at or below the
compaction point, and only if that revision is a put (a live value somebody may
still read at the compaction revision); older revisions go, and a tombstone at or
below the point takes its whole generation with it:

* ``compact(2)`` leaves ``{2, 3(t)}, {4, 5(t)}, {}``  (1 is shadowed by 2);
* ``compact(3)`` leaves ``{4, 5(t)}, {}``           (3 is a tombstone: the first
  generation is dead at revision 3, nothing of it can be read any more);
* ``compact(4)`` leaves ``{4, 5(t)}, {}``           (4 is the value visible at 4);
* ``compact(5)`` or later leaves only ``{}``: the key disappears from the index.

Revisions here are ``(main, sub)`` tuples compared lexicographically.  The functions
below are the reference semantics on an in-memory history; ``index.py`` applies the
same rules with cursor operations on LMDB (``compact_plan`` is shared), and the tests
check the two against each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .revision import Revision


@dataclass(frozen=True, slots=True)
class RevRecord:
    rev: Revision
    tombstone: bool = False


def get_at(history: Sequence[RevRecord], at_main: int) -> RevRecord | None:
    """The put visible at ``at_main``: the newest record with main <= at_main, if a put."""
    found: RevRecord | None = None
    for rec in history:  # callers pass short per-key histories; LMDB path uses a cursor
        if rec.rev.main > at_main:
            break
        found = rec
    if found is None or found.tombstone:
        return None
    return found


def since(history: Sequence[RevRecord], main: int) -> list[Revision]:
    """Revisions with main >= ``main``, one per main revision (the last sub of each)."""
    out: list[Revision] = []
    for rec in history:
        if rec.rev.main < main:
            continue
        if out and out[-1].main == rec.rev.main:
            out[-1] = rec.rev
        else:
            out.append(rec.rev)
    return out


def compact_plan(upto: Sequence[RevRecord]) -> tuple[list[RevRecord], RevRecord | None]:
    """Split the records with main <= at_rev into (to delete, kept).

    ``upto`` must be ascending and contain exactly the key's records at or below the
    compaction revision.  The newest one is kept iff it is a put.
    """
    if not upto:
        return [], None
    last = upto[-1]
    if last.tombstone:
        return list(upto), None
    return list(upto[:-1]), last


def generations(history: Sequence[RevRecord]) -> list[list[RevRecord]]:
    """The generations of a history, oldest first; the last one is the open one."""
    gens: list[list[RevRecord]] = [[]]
    for rec in history:
        gens[-1].append(rec)
        if rec.tombstone:
            gens.append([])
    return gens


def compact_history(history: Sequence[RevRecord], at_main: int) -> list[RevRecord]:
    """The history left after compacting at ``at_main`` (pure version of index compaction)."""
    upto = [r for r in history if r.rev.main <= at_main]
    rest = [r for r in history if r.rev.main > at_main]
    _, kept = compact_plan(upto)
    return ([kept] if kept else []) + rest

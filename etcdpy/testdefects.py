"""Deliberate defects, switched on only by the fault tests to prove that they catch bugs.

The fault harness (tests/faults/) claims to find lost writes and stale reads; a harness that
never fails proves nothing. These switches break the server on purpose, each in one known
place, so a test can show the harness reports a violation (the "teeth" tests):

* ``read-local``: a leader answers linearizable reads from its own state, with no ReadIndex
  heartbeat round, and the driver runs the Raft core without check-quorum. Check-quorum is
  what makes a partitioned leader step down; without it the old leader keeps believing it
  leads, so the local answer is stale for as long as the partition lasts (the classic
  "leader reads without confirming leadership" bug, not just a sub-second window).
* ``vote-not-persisted``: the Raft driver writes every hard state with ``vote=0``, so a member
  that restarts has forgotten whom it voted for and may vote twice in one term (two leaders
  in one term, divergent logs).

``--unsafe-no-fsync`` is etcd's own flag, not parsed here; `startup_warnings` covers it too,
so every unsafe mode is announced in the same loud way.

This module is read once, by the composition root (`etcdpy.app`), which passes plain
booleans down; the Raft core never sees it (its purity contract forbids such imports).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import IntFlag

ENV_VAR = "ETCDPY_TEST_DEFECTS"


class Defect(IntFlag):
    NONE = 0
    READ_LOCAL = 1
    VOTE_NOT_PERSISTED = 2


# The spelling in the environment variable, one per defect (every non-NONE member listed).
NAMES: dict[str, Defect] = {
    "read-local": Defect.READ_LOCAL,
    "vote-not-persisted": Defect.VOTE_NOT_PERSISTED,
}
assert set(NAMES.values()) == {d for d in Defect if d}, "every defect has exactly one name"


class UnknownDefectError(ValueError):
    """A name in ETCDPY_TEST_DEFECTS that is not a defect: refuse to start rather than run a
    correct server where a broken one was asked for (a typo would make a teeth test pass)."""


def parse(value: str) -> Defect:
    """The defects named in a comma-separated list (spaces and empty items ignored)."""
    defects = Defect.NONE
    for raw in value.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in NAMES:
            raise UnknownDefectError(
                f"{ENV_VAR}: unknown defect {name!r} (known: {', '.join(sorted(NAMES))})"
            )
        defects |= NAMES[name]
    return defects


def from_environ(environ: Mapping[str, str] | None = None) -> Defect:
    env = os.environ if environ is None else environ
    return parse(env.get(ENV_VAR, ""))


def startup_warnings(defects: Defect, unsafe_no_fsync: bool) -> list[str]:
    """One line per unsafe mode in force, for the log at start-up (empty when none)."""
    lines: list[str] = []
    if unsafe_no_fsync:
        lines.append(
            "--unsafe-no-fsync is set: nothing is ever fsynced; a power loss or OS crash "
            "loses acknowledged writes and may corrupt the data dir"
        )
    if defects & Defect.READ_LOCAL:
        lines.append(
            f"TEST DEFECT {ENV_VAR}=read-local: linearizable reads are served from the "
            "leader's local state without ReadIndex and check-quorum is off; reads may be "
            "stale. Never use outside the fault tests"
        )
    if defects & Defect.VOTE_NOT_PERSISTED:
        lines.append(
            f"TEST DEFECT {ENV_VAR}=vote-not-persisted: the Raft vote is never written to "
            "disk; a restarted member may vote twice in one term. Never use outside the "
            "fault tests"
        )
    return lines

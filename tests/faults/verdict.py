"""The one call the fault harness makes: is this history what etcd promises?

`check_history` runs the linearizability search over the whole key space (etcd_model, etcd_prepare) and then
the watch checks (watch_check) against the linearization it found. On a violation the history
is shrunk to a small part that still fails, printed with times relative to the first call.

The search runs up to three times. First it assumes that unknown writes nobody ever saw never
happened (what etcd's robustness tests conclude from the WAL); then that every unknown outcome
settled within a few seconds of its call. Both are cheap, and a linearization found so is a real
one. Only if both fail does it search with every unknown write possibly applied at any later
time, which alone can prove a violation.

What the history must give (the harness's side of the contract): the run starts from an empty
store at revision 1 and every change goes through recorded operations; each PUT/CAS value is
unique in the run (a read names its write); lease ids are chosen by the clients and granted
with a TTL that outlives the run; one client has one request in flight at a time. The time
spent can exceed `timeout_s` by the shrinking budget (at most min(20 s, timeout_s / 3)) plus
one more search of the shrunk part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.faults import etcd_prepare, shrink, watch_check
from tests.faults.history import History, WatchResponse
from tests.faults.linearizability import SearchResult, Verdict, check

_MAX_SHOWN = 40  # operations printed in an explanation
_SETTLE_S = 5.0  # the second pass assumes an unknown outcome settles this soon after its call


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    kind: str  # "linearizability", "watch:<guarantee>", "" when ok
    explanation: str
    unknown: bool = False  # the search ran out of time: not proven, never counted as ok

    def __post_init__(self) -> None:
        assert not (self.ok and (self.unknown or self.kind)), "ok means proven and clean"


@dataclass(frozen=True, slots=True)
class Linearized:
    verdict: Verdict
    prepared: etcd_prepare.Prepared
    result: SearchResult | None  # None: a static violation, no search needed


def linearize(history: History, deadline: float) -> Linearized:
    full = etcd_prepare.prepare(history)
    if full.static:
        return Linearized(Verdict.ILLEGAL, full, None)
    if any(it.maybe for it in full.items):
        # Cheaper assumptions first; each can only prove OK (see etcd_prepare.prepare).
        for assumed in (etcd_prepare.prepare(history, drop_unseen=True),
                        etcd_prepare.prepare(history, settle_s=_SETTLE_S)):
            share = time.monotonic() + (deadline - time.monotonic()) / 4
            result = check(assumed.items, assumed.model, min(deadline, share))
            if result.verdict == Verdict.OK:
                return Linearized(Verdict.OK, assumed, result)
    result = check(full.items, full.model, deadline)
    return Linearized(result.verdict, full, result)


def check_history(history: History, timeout_s: float = 60.0) -> CheckResult:
    start = time.monotonic()
    deadline = start + timeout_s
    lin = linearize(history, deadline)
    if lin.verdict == Verdict.UNKNOWN:
        return CheckResult(False, "linearizability", _header(history) +
                           f"the linearizability search ran out of its {timeout_s:.0f} s: "
                           "not proven either way", unknown=True)
    if lin.verdict == Verdict.ILLEGAL:
        if lin.prepared.static:  # found without search: it names its operations already
            return CheckResult(False, "linearizability",
                               _header(history) + explain_static(history, lin.prepared))
        budget = max(1.0, min(20.0, timeout_s / 3))
        return CheckResult(False, "linearizability",
                           _header(history) + explain(history, time.monotonic() + budget))
    assert lin.result is not None
    made = etcd_prepare.replay(lin.prepared, lin.result.order, history)
    violations = watch_check.check_watches(history, made)
    if violations:
        first = violations[0]
        lines = [_header(history).rstrip("\n"), f"watch {first.watch} broke '{first.guarantee}': {first.detail}"]
        lines.extend(f"  also watch {v.watch} '{v.guarantee}': {v.detail}" for v in violations[1:10])
        if len(violations) > 10:
            lines.append(f"  ... and {len(violations) - 10} more")
        lines.append(_describe_watch(history, first.watch, first.revision))
        if first.revision in made:
            truth = made[first.revision]
            t0 = min((op.call for op in history.operations), default=0.0)
            lines.append(f"revision {first.revision} was made by: "
                         + etcd_prepare.describe(history.operations[truth.operation], t0))
        return CheckResult(False, f"watch:{first.guarantee}", "\n".join(lines))
    return CheckResult(True, "", "")


def _header(history: History) -> str:
    return (f"seed {history.seed} ({len(history.operations)} operations, "
            f"{len(history.watches)} watches, keys {list(history.keys)})\n")


# --- explaining ---------------------------------------------------------------------------------


def explain_static(history: History, prepared: etcd_prepare.Prepared) -> str:
    t0 = min((op.call for op in history.operations), default=0.0)
    lines: list[str] = []
    for involved, why in prepared.static[:5]:
        lines.append(f"{why}:")
        lines.extend("  " + etcd_prepare.describe(history.operations[i], t0) for i in involved)
    if len(prepared.static) > 5:
        lines.append(f"... and {len(prepared.static) - 5} more such findings")
    lines.append(f"replay: the seed is {history.seed}")
    return "\n".join(lines)


def explain(history: History, deadline: float) -> str:
    """The smallest failing part found, readably, with times relative to the first call."""
    window = shrink.shrink(history, deadline)
    sub = window.history
    prepared = etcd_prepare.prepare(sub, revision=window.lo - 1,
                                  start=window.start if window.lo > 2 else None)
    ops = sub.operations
    t0 = min((op.call for op in history.operations), default=0.0)
    lines: list[str] = []
    for involved, why in prepared.static[:5]:
        lines.append(f"{why}:")
        lines.extend("  " + etcd_prepare.describe(ops[i], t0) for i in involved)
    if prepared.static:
        lines.append(f"replay: the seed is {history.seed}")
        return "\n".join(lines)
    result = check(prepared.items, prepared.model, max(deadline, time.monotonic() + 1.0))
    stuck = -1
    if result.stuck >= 0:
        stuck = prepared.items[result.stuck].payload.index
    if window.lo > 2:
        store, leases = window.start
        shown = ", ".join(f"{kv.key}={kv.value!r}@{kv.mod_revision}" for kv in store.values())
        lines.append(f"starting from revision {window.lo - 1} (determined by the acknowledged "
                     f"writes before it): {{{shown}}}, leases {sorted(leases)}")
    core = [i for i, op in enumerate(ops) if not op.unknown]
    lines.append(f"not linearizable: {len(core)} acknowledged operation(s) that cannot all be "
                 "true (times in s from the first call; '?': outcome unknown):")
    for i in core[:_MAX_SHOWN]:
        mark = "  <- cannot be placed" if i == stuck else ""
        lines.append("  " + etcd_prepare.describe(ops[i], t0) + mark)
    if len(core) > _MAX_SHOWN:
        lines.append(f"  ... {len(core) - _MAX_SHOWN} more")
    ignored = sum(op.error == shrink.IGNORED for op in ops)
    if ignored:
        lines.append(f"({ignored} other acknowledged writes are not needed for the contradiction: "
                     "their outcome was treated as unknown, not listed)")
    unknown = [i for i, op in enumerate(ops) if op.unknown and op.error != shrink.IGNORED]
    if unknown:
        lines.append(f"with {len(unknown)} writes whose outcome is unknown (each may have taken "
                     "effect at any time after its call, or never)"
                     + (":" if len(unknown) <= 10 else ", e.g.:"))
        lines.extend("  " + etcd_prepare.describe(ops[i], t0) for i in unknown[:10])
    lines.append(f"replay: the seed is {history.seed}")
    return "\n".join(lines)


def _describe_watch(history: History, index: int, around: int) -> str:
    """The watch's request and its responses near revision `around` (all if 0)."""
    w = history.watches[index]
    t0 = min((op.call for op in history.operations), default=0.0)
    head = (f"watch {index} (client {w.client}) on [{w.key!r}, {w.range_end!r}) from revision "
            f"{w.start_revision}, prev_kv={w.prev_kv}, progress_notify={w.progress_notify}:")
    lines = [head]

    def near(r: WatchResponse) -> bool:
        revs = [e.kv.mod_revision for e in r.events] or [r.header_revision]
        return around == 0 or any(abs(rev - around) <= 3 for rev in revs)

    shown = [(n, r) for n, r in enumerate(w.responses) if near(r)]
    if len(shown) < len(w.responses):
        lines.append(f"  ({len(w.responses)} responses; those within 3 revisions of {around}:)")
    for n, r in shown[:_MAX_SHOWN]:
        what = ", ".join(watch_check._event_text(e) for e in r.events)
        flags = " progress" if r.progress_notify else ""
        flags += f" canceled({r.cancel_reason!r}, compact {r.compact_revision})" if r.canceled else ""
        lines.append(f"  #{n} at {r.received - t0:7.3f} header {r.header_revision}{flags}: {what}")
    if len(shown) > _MAX_SHOWN:
        lines.append(f"  ... {len(shown) - _MAX_SHOWN} more responses")
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    """`python -m tests.faults.verdict HISTORY.jsonl [TIMEOUT_S]`: check a saved history again."""
    import sys
    from pathlib import Path

    from tests.faults.history import load_path

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(main.__doc__)
        return 2
    history = load_path(Path(args[0]))
    result = check_history(history, float(args[1]) if len(args) > 1 else 60.0)
    if result.ok:
        print(f"ok: seed {history.seed}, {len(history.operations)} operations, "
              f"{len(history.watches)} watches")
        return 0
    print(("UNKNOWN " if result.unknown else "VIOLATION ") + result.kind)
    print(result.explanation)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The one call the fault harness makes: is this history what etcd promises?

`check_history` runs the linearizability search over the whole key space (etcd_model) and then
the watch checks (watch_check) against the linearization it found. On a violation the history
is shrunk to a small part that still fails, printed with times relative to the first call.

The search runs twice when it must. First it assumes that unknown writes nobody ever saw never
happened (what etcd's robustness tests conclude from the WAL): cheap, and a linearization found
so is a real one. Only if that fails does it search with every unknown write possibly applied,
which alone can prove a violation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from tests.faults import etcd_model, watch_check
from tests.faults.history import History, Operation
from tests.faults.linearizability import SearchResult, Verdict, check

_MAX_SHOWN = 40  # operations printed in an explanation
_IGNORED = "(outcome ignored while shrinking)"


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
    prepared: etcd_model.Prepared
    result: SearchResult | None  # None: a static violation, no search needed


def linearize(history: History, deadline: float) -> Linearized:
    full = etcd_model.prepare(history)
    if full.static:
        return Linearized(Verdict.ILLEGAL, full, None)
    quick = etcd_model.prepare(history, drop_unseen=True)
    if len(quick.items) < len(full.items):
        share = time.monotonic() + (deadline - time.monotonic()) / 3
        result = check(quick.items, quick.model, min(deadline, share))
        if result.verdict == Verdict.OK:
            return Linearized(Verdict.OK, quick, result)
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
        small = history
        if not lin.prepared.static:  # a static violation names its operations already
            budget = max(1.0, min(20.0, timeout_s / 3))
            small = shrink(history, time.monotonic() + budget)
        return CheckResult(False, "linearizability", _header(history) + explain(small))
    assert lin.result is not None
    made = etcd_model.replay(lin.prepared, lin.result.order)
    violations = watch_check.check_watches(history, made)
    if violations:
        first = violations[0]
        lines = [_header(history), f"watch {first.watch} broke '{first.guarantee}': {first.detail}"]
        lines.extend(f"  also watch {v.watch} '{v.guarantee}': {v.detail}" for v in violations[1:10])
        if len(violations) > 10:
            lines.append(f"  ... and {len(violations) - 10} more")
        lines.append(_describe_watch(history, first.watch))
        return CheckResult(False, f"watch:{first.guarantee}", "\n".join(lines))
    return CheckResult(True, "", "")


def _header(history: History) -> str:
    return (f"seed {history.seed} ({len(history.operations)} operations, "
            f"{len(history.watches)} watches, keys {list(history.keys)})\n")


# --- shrinking ---------------------------------------------------------------------------------


def _relaxed(op: Operation) -> Operation | None:
    """A weaker observation: a read is forgotten, a write's outcome becomes unknown.

    Every linearization of the original is one of the relaxed history, so if the relaxed
    history still fails, the observations that remain are contradictory by themselves.
    """
    if op.request.kind in etcd_model.READS or op.definite_failure:
        return None
    if op.unknown:
        return op
    return replace(op, ret=math.inf, response=None, error=_IGNORED)


def _fails(history: History, deadline: float) -> bool:
    """Proven illegal within the time left (an unknown answer does not count)."""
    per_try = min(deadline, time.monotonic() + 2.0)
    return linearize(history, per_try).verdict == Verdict.ILLEGAL


def shrink(history: History, deadline: float) -> History:
    """Relax operations (ddmin over chunks) while the history still fails; bounded by time."""
    ops = list(history.operations)
    known = [i for i, op in enumerate(ops) if not op.unknown]

    def build(relax: set[int]) -> History:
        kept: list[Operation] = []
        for i, op in enumerate(ops):
            if i in relax:
                weaker = _relaxed(op)
                if weaker is not None:
                    kept.append(weaker)
            else:
                kept.append(op)
        return History(history.seed, history.keys, kept, [])

    relax: set[int] = set()
    chunk = max(1, len(known) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        candidates = [i for i in known if i not in relax]
        progress = False
        for lo in range(0, len(candidates), chunk):
            if time.monotonic() >= deadline:
                break
            trial = relax | set(candidates[lo:lo + chunk])
            if _fails(build(trial), deadline):
                relax = trial
                progress = True
        if not progress:
            chunk //= 2
    return build(relax)


def explain(history: History) -> str:
    """The failing history readably: acknowledged operations in full, relaxed ones counted."""
    lin = linearize(history, time.monotonic() + 10.0)
    ops = history.operations
    t0 = min((op.call for op in ops), default=0.0)
    lines: list[str] = []
    static = lin.prepared.static
    for involved, why in static[:5]:
        lines.append(f"{why}:")
        lines.extend("  " + etcd_model.describe(ops[i], t0) for i in involved)
    if static:
        lines.append(f"replay: the seed is {history.seed}")
        return "\n".join(lines)
    stuck = -1
    if lin.result is not None and lin.result.stuck >= 0:
        stuck = lin.prepared.items[lin.result.stuck].payload.index
    core = [i for i, op in enumerate(ops) if not op.unknown]
    lines.append(f"not linearizable: these {len(core)} acknowledged operations cannot all be "
                 f"true (times in s from the first call; '?': outcome unknown):")
    for i in core[:_MAX_SHOWN]:
        mark = "  <- cannot be placed" if i == stuck else ""
        lines.append("  " + etcd_model.describe(ops[i], t0) + mark)
    if len(core) > _MAX_SHOWN:
        lines.append(f"  ... {len(core) - _MAX_SHOWN} more")
    ignored = sum(op.error == _IGNORED for op in ops)
    if ignored:
        lines.append(f"({ignored} other acknowledged writes are not needed for the contradiction: "
                     "shown as outcome unknown while shrinking, not listed)")
    unknown = [i for i, op in enumerate(ops) if op.unknown and op.error != _IGNORED]
    if unknown:
        lines.append(f"with {len(unknown)} writes whose outcome is unknown or was ignored "
                     "(each may have taken effect at any time after its call, or never)"
                     + (":" if len(unknown) <= 10 else ", e.g.:"))
        lines.extend("  " + etcd_model.describe(ops[i], t0) for i in unknown[:10])
    lines.append(f"replay: the seed is {history.seed}")
    return "\n".join(lines)


def _describe_watch(history: History, index: int) -> str:
    w = history.watches[index]
    t0 = min((op.call for op in history.operations), default=0.0)
    head = (f"watch {index} (client {w.client}) on [{w.key!r}, {w.range_end!r}) from revision "
            f"{w.start_revision}, prev_kv={w.prev_kv}, progress_notify={w.progress_notify}:")
    lines = [head]
    for n, r in enumerate(w.responses[:_MAX_SHOWN]):
        what = ", ".join(watch_check._event_text(e) for e in r.events)
        flags = " progress" if r.progress_notify else ""
        flags += f" canceled({r.cancel_reason!r}, compact {r.compact_revision})" if r.canceled else ""
        lines.append(f"  #{n} at {r.received - t0:7.3f} header {r.header_revision}{flags}: {what}")
    if len(w.responses) > _MAX_SHOWN:
        lines.append(f"  ... {len(w.responses) - _MAX_SHOWN} more responses")
    return "\n".join(lines)


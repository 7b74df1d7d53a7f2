"""A linearizability checker: Wing & Gong's search with Lowe's memoization (porcupine's shape).

The history is a set of operations, each with an invocation time, a completion time and what
it returned. It is linearizable if there is one sequential order of (a subset of) them that
respects real time (an operation that completed before another was invoked comes first) and in
which every operation's result is what a sequential `Model` would have returned.

The search walks a doubly linked list of call and return events sorted by time. At a call it
tries to linearize that operation now (the model step is legal and the pair (set linearized so
far, model state) has not been seen before); if so the operation's two events are lifted out of
the list and the walk restarts at the head. Reaching a return event means its operation can no
longer be placed, so the last choice is undone (dancing links: events are put back in the
reverse order they were lifted). The memo set makes the search polynomial in practice: the same
(set, state) reached by two orders is explored once.

An operation whose outcome is unknown (timed out) has `ret = inf`: it may take effect at any
point after its call, or never. Its return event sorts after every finite event, so when the
walk reaches one, every operation with a known outcome has been linearized and the rest may be
placed "at the end", which nobody observed: the history is linearizable.

Independent parts of the state (e.g. keys of a key-value map without global revisions) can be
checked separately (P-compositionality): `check_partitions`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Generic, Protocol, TypeVar

S = TypeVar("S", bound=Hashable)  # model state: hashable, compared by value
P = TypeVar("P")  # what a model step looks at: the operation's input and output


class Verdict(IntEnum):
    OK = 0
    ILLEGAL = 1
    UNKNOWN = 2  # the time budget ran out: not proven either way


class Model(Protocol[S, P]):
    """A sequential specification.

    `step` returns the state after applying `payload` to `state` if the payload's recorded
    output is what the specification gives in `state`, else None. For an operation with an
    unknown outcome it must accept whatever the specification does (it is applied blindly).
    """

    def init(self) -> S: ...

    def step(self, state: S, payload: P) -> S | None: ...


@dataclass(frozen=True, slots=True)
class Item(Generic[P]):
    """One operation as the search sees it."""

    call: float
    ret: float  # math.inf: outcome unknown, may be applied at any later point or never
    payload: P
    # Unknown-outcome items with equal `twin` keys have the same effect in every state: the
    # search linearizes only the earliest-called pending one of them (symmetry reduction).
    twin: Hashable | None = None
    # With a finite `ret`: the item may take effect before `ret` or never (an unknown outcome
    # assumed to be settled by then). With ret = inf this is implied.
    optional: bool = False

    def __post_init__(self) -> None:
        assert self.call <= self.ret, "an operation completes after it starts"
        assert self.twin is None or self.maybe, "only unknown outcomes are twins"

    @property
    def maybe(self) -> bool:
        """Whether the item may also never take effect."""
        return self.optional or math.isinf(self.ret)


@dataclass(frozen=True, slots=True)
class SearchResult:
    verdict: Verdict
    # OK: the indices of the items in a legal order (items left out never took effect).
    # ILLEGAL/UNKNOWN: the longest legal prefix the search found.
    order: tuple[int, ...]
    # ILLEGAL: the item whose return could not be passed after `order` (-1 otherwise).
    stuck: int
    steps: int  # model steps tried: the work done


def check(
    items: Sequence[Item[P]],
    model: Model[S, P],
    deadline: float = math.inf,
    start: S | None = None,
) -> SearchResult:
    """Search for a linearization of `items`; give up with UNKNOWN at `deadline` (monotonic)."""
    n = len(items)
    if n == 0:
        return SearchResult(Verdict.OK, (), -1, 0)
    # Event nodes: 0 is the head sentinel, 2i+1 the call of item i, 2i+2 its return. Calls sort
    # before returns at equal times so that touching operations count as concurrent (lenient,
    # like porcupine).
    events = sorted(
        [(it.call, 0, i) for i, it in enumerate(items)] + [(it.ret, 1, i) for i, it in enumerate(items)]
    )
    size = 2 * n + 1
    nxt = [-1] * size
    prv = [-1] * size
    last = 0
    for _t, kind, i in events:
        node = 2 * i + 1 + kind
        nxt[last] = node
        prv[node] = last
        last = node
    optional = [it.maybe for it in items]
    endless = [math.isinf(it.ret) for it in items]
    # prev_twin[i]: the twin of item i called just before it, or -1.
    prev_twin = [-1] * n
    last_twin: dict[Hashable, int] = {}
    for _t, kind, i in events:
        twin = items[i].twin
        if kind == 0 and twin is not None:
            prev_twin[i] = last_twin.get(twin, -1)
            last_twin[twin] = i
    placed = bytearray(n)  # placed[i]: item i is linearized (mirrors `bits`, cheap to test)
    payloads = [it.payload for it in items]
    step = model.step

    state: S = model.init() if start is None else start
    bits = 0
    seen: set[tuple[int, Hashable]] = set()
    stack: list[tuple[int, S]] = []
    best: tuple[int, ...] = ()
    best_stuck = -1
    steps = 0
    entry = nxt[0]
    while True:
        if entry == -1:
            return SearchResult(Verdict.OK, tuple(i for i, _ in stack if i >= 0), -1, steps)
        i, is_ret = divmod(entry - 1, 2)
        if not is_ret:
            twin = prev_twin[i]
            if twin >= 0 and not placed[twin]:
                entry = nxt[entry]  # its earlier twin is pending: trying it covers this one
                continue
            steps += 1
            if steps & 0xFFF == 0 and time.monotonic() > deadline:
                return SearchResult(Verdict.UNKNOWN, best, -1, steps)
            new = step(state, payloads[i])
            # An unknown-outcome operation that would change nothing here is better left
            # pending: placed later it might matter, placed here it only multiplies the
            # linearized sets that lead to the same state.
            if new is not None and not (optional[i] and (new is state or new == state)):
                new_bits = bits | (1 << i)
                key = (new_bits, new)
                if key not in seen:
                    seen.add(key)
                    stack.append((i, state))
                    state, bits = new, new_bits
                    placed[i] = 1
                    call, ret = entry, entry + 1  # lift both events out of the list
                    nxt[prv[call]] = nxt[call]
                    if nxt[call] != -1:
                        prv[nxt[call]] = prv[call]
                    nxt[prv[ret]] = nxt[ret]
                    if nxt[ret] != -1:
                        prv[nxt[ret]] = prv[ret]
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
            continue
        if endless[i]:
            # Only unknown outcomes are left: they take effect after everything, i.e. unseen.
            return SearchResult(Verdict.OK, tuple(j for j, _ in stack if j >= 0), -1, steps)
        if optional[i]:
            # Its time is up without it taking effect: it never does (a forced step, recorded
            # on the stack as -1 - i so that backtracking passes over it).
            new_bits = bits | (1 << i)
            key = (new_bits, state)
            if key not in seen:
                seen.add(key)
                stack.append((-1 - i, state))
                bits = new_bits
                placed[i] = 1
                call, ret = entry - 1, entry
                nxt[prv[call]] = nxt[call]
                if nxt[call] != -1:
                    prv[nxt[call]] = prv[call]
                nxt[prv[ret]] = nxt[ret]
                if nxt[ret] != -1:
                    prv[nxt[ret]] = prv[ret]
                entry = nxt[0]
                continue
        else:
            # Item i must have been linearized by now and was not: undo the last choice.
            depth = sum(1 for j, _ in stack if j >= 0) if len(stack) >= len(best) else 0
            if depth > len(best) or (best_stuck == -1 and depth >= len(best)):
                best, best_stuck = tuple(j for j, _ in stack if j >= 0), i
        while True:
            if not stack:
                return SearchResult(Verdict.ILLEGAL, best, best_stuck, steps)
            j, state = stack.pop()
            forced = j < 0
            if forced:
                j = -1 - j
            bits ^= 1 << j
            placed[j] = 0
            call, ret = 2 * j + 1, 2 * j + 2  # put back in reverse order of lifting
            nxt[prv[ret]] = ret
            if nxt[ret] != -1:
                prv[nxt[ret]] = ret
            nxt[prv[call]] = call
            if nxt[call] != -1:
                prv[nxt[call]] = call
            if not forced:
                entry = nxt[call]
                break


@dataclass(frozen=True, slots=True)
class PartitionResult:
    verdict: Verdict
    # the first partition found illegal (or unknown), with its search result; -1 when OK
    partition: int
    result: SearchResult | None


def check_partitions(
    items: Sequence[Item[P]],
    model: Model[S, P],
    partition: Callable[[P], Hashable],
    timeout_s: float = 60.0,
) -> tuple[PartitionResult, list[list[int]]]:
    """Check each independent part (items with the same `partition(payload)`) on its own.

    Returns the verdict and the parts as index lists into `items`, so that the caller can show
    the failing part. UNKNOWN wins over OK but ILLEGAL wins over UNKNOWN (a proven violation).
    """
    groups: dict[Hashable, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(partition(it.payload), []).append(i)
    parts = list(groups.values())
    deadline = time.monotonic() + timeout_s
    unknown: PartitionResult | None = None
    for p, idx in enumerate(parts):
        result = check([items[i] for i in idx], model, deadline)
        if result.verdict == Verdict.ILLEGAL:
            return PartitionResult(Verdict.ILLEGAL, p, result), parts
        if result.verdict == Verdict.UNKNOWN and unknown is None:
            unknown = PartitionResult(Verdict.UNKNOWN, p, result)
    return (unknown or PartitionResult(Verdict.OK, -1, None)), parts

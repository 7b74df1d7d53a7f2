"""The generic search agrees with porcupine's ground truth and handles unknown outcomes."""

from __future__ import annotations

import math
import time

import pytest

from tests.faults import known_histories as k
from tests.faults.linearizability import Item, Verdict, check, check_partitions

VERDICTS = k.verdicts()


def test_the_data_is_all_there() -> None:
    assert len(VERDICTS) == 108
    assert sum(ok for f, ok in VERDICTS if f.startswith("jepsen")) == 23
    assert sum(ok for f, ok in VERDICTS if f.startswith("kv")) == 3


@pytest.mark.parametrize(("name", "linearizable"), VERDICTS, ids=[f for f, _ in VERDICTS])
def test_known_verdict(name: str, linearizable: bool) -> None:
    path = k.DATA / name
    deadline = time.monotonic() + 30
    if name.startswith("jepsen"):
        result = check(k.parse_jepsen(path), k.Register(), deadline)
        verdict = result.verdict
        if verdict == Verdict.OK:
            _assert_replays(k.parse_jepsen(path), result.order)
    else:
        outcome, _parts = check_partitions(k.parse_kv(path), k.StringMap(), lambda c: c.key, 30)
        verdict = outcome.verdict
    assert verdict == (Verdict.OK if linearizable else Verdict.ILLEGAL)


def _assert_replays(items: list[Item[k.RegCall]], order: tuple[int, ...]) -> None:
    """The order returned is a real linearization: legal steps, real-time order kept."""
    model = k.Register()
    state = model.init()
    placed: set[int] = set()
    for i in order:
        nxt = model.step(state, items[i].payload)
        assert nxt is not None
        state = nxt
        for j, other in enumerate(items):
            if j not in placed and other.ret < items[i].call:
                pytest.fail(f"item {j} returned before {i} was called but is placed after it")
        placed.add(i)
    assert all(math.isinf(it.ret) for j, it in enumerate(items) if j not in placed)


def reg(op: k.RegOp, arg: int | None = None, new: int | None = None, ok: bool = True,
        unknown: bool = False) -> k.RegCall:
    return k.RegCall(op, arg, new, ok, unknown)


R, W, CAS = k.RegOp.READ, k.RegOp.WRITE, k.RegOp.CAS


def test_stale_read_after_acknowledged_write_is_illegal() -> None:
    items = [Item(0, 1, reg(W, 1)), Item(2, 3, reg(R, None))]
    assert check(items, k.Register()).verdict == Verdict.ILLEGAL


def test_concurrent_read_may_see_either() -> None:
    for seen in (None, 1):
        items = [Item(0, 3, reg(W, 1)), Item(1, 2, reg(R, seen))]
        assert check(items, k.Register()).verdict == Verdict.OK


def test_unknown_write_may_apply_late_or_never() -> None:
    late = [Item(0, math.inf, reg(W, 5, unknown=True)), Item(10, 11, reg(R, None)),
            Item(12, 13, reg(R, 5))]
    assert check(late, k.Register()).verdict == Verdict.OK
    never = [Item(0, math.inf, reg(W, 5, unknown=True)), Item(10, 11, reg(R, None))]
    assert check(never, k.Register()).verdict == Verdict.OK
    # but not before it was called
    early = [Item(0, 1, reg(R, 5)), Item(2, math.inf, reg(W, 5, unknown=True))]
    assert check(early, k.Register()).verdict == Verdict.ILLEGAL


def test_a_value_cannot_come_back() -> None:
    items = [Item(0, 1, reg(W, 1)), Item(2, 3, reg(W, 2)), Item(4, 5, reg(R, 2)),
             Item(6, 7, reg(R, 1))]
    result = check(items, k.Register())
    assert result.verdict == Verdict.ILLEGAL
    assert result.stuck == 3  # the read of the overwritten value is what cannot be placed


def test_failed_cas_is_an_observation() -> None:
    items = [Item(0, 1, reg(W, 1)), Item(2, 3, reg(CAS, 1, 2, ok=False))]
    assert check(items, k.Register()).verdict == Verdict.ILLEGAL
    items = [Item(0, 1, reg(W, 1)), Item(2, 3, reg(CAS, 1, 2, ok=True)), Item(4, 5, reg(R, 2))]
    assert check(items, k.Register()).verdict == Verdict.OK


def test_deadline_gives_unknown_not_ok() -> None:
    # Many concurrent writes and one impossible read: the search needs many steps to refute it.
    items = [Item(0, 100, reg(W, v)) for v in range(16)] + [Item(0, 100, reg(R, 99))]
    result = check(items, k.Register(), deadline=time.monotonic() - 1)
    assert result.verdict == Verdict.UNKNOWN


def test_twins_are_tried_once() -> None:
    # Ten interchangeable unknown writes: the symmetry reduction keeps the search small.
    items = [Item(0, math.inf, reg(W, 7, unknown=True), twin="w7") for _ in range(10)]
    items += [Item(1, 2, reg(R, 7)), Item(3, 4, reg(R, 7))]
    result = check(items, k.Register())
    assert result.verdict == Verdict.OK
    assert result.steps < 100


def test_an_unknown_outcome_with_a_time_limit() -> None:
    """optional=True with a finite ret: applied before ret, or never."""
    write = Item(0, 5, reg(W, 5, unknown=True), optional=True)
    assert check([write, Item(3, 4, reg(R, 5))], k.Register()).verdict == Verdict.OK
    assert check([write, Item(1, 2, reg(R, None)), Item(6, 7, reg(R, None))],
                 k.Register()).verdict == Verdict.OK  # never
    # seen only after its time was up, having not been seen before: impossible
    result = check([write, Item(6, 7, reg(R, None)), Item(8, 9, reg(R, 5))], k.Register())
    assert result.verdict == Verdict.ILLEGAL

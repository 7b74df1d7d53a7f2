"""Randomized histories: correct by construction (must pass) and with one defect (must fail).

The generator (`synth.py`) runs an independent sequential etcd at random points inside the
operations' intervals, so its histories are linearizable and its watches complete; `mutate`
changes one response so that no linearization exists (with no unknown outcomes around, each of
its changes is a contradiction).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults import synth
from tests.faults.verdict import check_history

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=st.integers(0, 2**32), clients=st.integers(1, 6),
       unknown=st.sampled_from([0.0, 0.05, 0.15]), stale=st.sampled_from([0.0, 0.2]))
def test_correct_histories_pass(seed: int, clients: int, unknown: float, stale: float) -> None:
    shape = synth.Shape(clients=clients, operations=150, unknown_rate=unknown, stale_rate=stale,
                        watchers=3)
    history = synth.generate(seed, shape)
    result = check_history(history, timeout_s=30)
    assert result.ok, result.explanation


@SETTINGS
@given(seed=st.integers(0, 2**32), clients=st.integers(2, 6))
def test_one_mutation_is_caught(seed: int, clients: int) -> None:
    shape = synth.Shape(clients=clients, operations=120, unknown_rate=0.0, watchers=0)
    history = synth.generate(seed, shape)
    rng = random.Random(seed)
    mutated = None
    for _ in range(1000):
        mutated = synth.mutate(history, rng)
        if mutated is not None:
            break
    assert mutated is not None
    broken, what = mutated
    result = check_history(broken, timeout_s=30)
    assert not result.ok, f"not caught: {what}"
    assert not result.unknown, f"search gave up on: {what}"
    assert result.kind == "linearizability"
    assert f"seed {seed}" in result.explanation


@SETTINGS
@given(seed=st.integers(0, 2**32))
def test_a_value_never_written_is_caught_among_unknown_outcomes(seed: int) -> None:
    history = synth.generate(seed, synth.Shape(clients=4, operations=120, unknown_rate=0.15))
    reads = [i for i, op in enumerate(history.operations)
             if op.response is not None and op.response.kvs]
    if not reads:
        return
    i = random.Random(seed).choice(reads)
    op = history.operations[i]
    assert op.response is not None
    kv0 = op.response.kvs[0]
    from dataclasses import replace
    bad = replace(op, response=replace(op.response, kvs=(replace(kv0, value="ghost"),
                                                         *op.response.kvs[1:])))
    history.operations[i] = bad
    result = check_history(history, timeout_s=30)
    assert not result.ok
    assert "a value nobody wrote" in result.explanation


@SETTINGS
@given(seed=st.integers(0, 2**32))
def test_a_stale_or_incomplete_read_is_found_by_the_search(seed: int) -> None:
    """Defects no static check sees: only the search over the whole key space finds them."""
    history = synth.generate(seed, synth.Shape(clients=4, operations=120, unknown_rate=0.0,
                                               watchers=0))
    rng = random.Random(seed)
    for _ in range(2000):
        mutated = synth.mutate(history, rng)
        if mutated is not None and mutated[1].split(": ")[1].startswith(("range lost", "read an")):
            break
    else:
        return  # this history has no read to spoil that way
    broken, what = mutated
    result = check_history(broken, timeout_s=30)
    assert not result.ok, f"not caught: {what}"
    assert not result.unknown
    assert "<- cannot be placed" in result.explanation, result.explanation
    shown = [line for line in result.explanation.splitlines() if line.startswith("  [")]
    assert len(shown) <= 10, result.explanation  # shrunk to the contradiction, not the run


def test_an_empty_history_is_fine() -> None:
    from tests.faults.history import History

    assert check_history(History(seed=1, keys=("k",))).ok


def test_a_saved_history_can_be_checked_again(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.faults.history import save
    from tests.faults.verdict import main

    history = synth.generate(5, synth.Shape(clients=3, operations=80, watchers=1))
    save(history, tmp_path / "good.jsonl")
    assert main([str(tmp_path / "good.jsonl")]) == 0
    assert "ok: seed 5" in capsys.readouterr().out
    op = next(op for op in history.operations if op.response is not None and op.response.kvs)
    i = history.operations.index(op)
    from dataclasses import replace

    assert op.response is not None
    kv = replace(op.response.kvs[0], value="ghost")
    history.operations[i] = replace(op, response=replace(op.response, kvs=(kv,)))
    save(history, tmp_path / "bad.jsonl")
    assert main([str(tmp_path / "bad.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION linearizability" in out and "seed is 5" in out


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_a_run_sized_history_is_proven(seed: int) -> None:
    """About what 8 clients do in 20 s (3000 operations over 5 keys, a few timeouts, watches):
    the search must finish with a proof, not run out of time."""
    shape = synth.Shape(clients=8, operations=3000, unknown_rate=0.02, watchers=4)
    result = check_history(synth.generate(seed, shape), timeout_s=120)
    assert result.ok and not result.unknown, result.explanation

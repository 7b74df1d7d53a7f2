"""The same seed gives the same run, event for event; another seed gives another run."""

from __future__ import annotations

from .runner import run_seed


def test_same_seed_same_trace() -> None:
    a = run_seed(11, nodes=5, steps=1500)
    b = run_seed(11, nodes=5, steps=1500)
    assert a.trace_hash == b.trace_hash
    assert a.stats == b.stats and a.trace_tail == b.trace_tail
    assert a.stats.steps == 1500 and a.stats.messages > 0


def test_same_seed_same_trace_with_a_bug_switched_on() -> None:
    a = run_seed(4, nodes=3, steps=800, bug="no-log-up-to-date-check")
    b = run_seed(4, nodes=3, steps=800, bug="no-log-up-to-date-check")
    assert a.trace_hash == b.trace_hash and str(a.violation) == str(b.violation)


def test_different_seeds_differ() -> None:
    hashes = {run_seed(s, nodes=3, steps=500).trace_hash for s in range(5)}
    assert len(hashes) == 5

"""The same seed gives the same run, event for event; another seed gives another run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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


def test_same_seed_same_trace_across_processes_and_hash_seeds() -> None:
    """Nothing may depend on str hashing or other per-process state."""
    top = Path(__file__).resolve().parents[2]
    hashes = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [str(top / "scripts" / "sim"), "--seed", "5", "--nodes", "5", "--steps", "1500"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ).stdout
        hashes.add(out.split("trace ")[1].split()[0])
    assert len(hashes) == 1

"""The server-layer simulation (`scripts/sim --server`): real LMDB storage, the server's
Applier and state images under the same seeded faults as the pure-core simulator.

On failure the message names each failing seed, the broken invariant, the last events and
the replay command (`scripts/sim --server --seed S --nodes N --steps K -v`).  A longer run:
`scripts/sim --server --seeds 2000 --start 100 --steps 6000`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .runner import default_jobs, nodes_for
from .server_cluster import SERVER_BUGS
from .server_runner import (
    DEFAULT_SERVER_STEPS,
    format_server_failure,
    run_server_seed,
    run_server_seeds,
    violation_name,
)

CI_SEEDS = 100


def _mixed(seed: int) -> int:
    return nodes_for(seed, "mixed")


def test_100_seeds_of_the_server_layer_have_no_violation() -> None:
    summ = run_server_seeds(0, CI_SEEDS, _mixed, DEFAULT_SERVER_STEPS, jobs=default_jobs())
    print(
        f"\n{summ.runs} seeds x {DEFAULT_SERVER_STEPS} events (server layer): "
        f"{len(summ.failures)} failing; {summ.applied} entries applied, {summ.acked_writes} "
        f"writes acknowledged, {summ.reads} linearizable reads checked, {summ.crashes} "
        f"crashes, {summ.snapshots_installed} snapshots installed, {summ.conf_changes} "
        f"membership changes"
    )
    assert summ.runs == CI_SEEDS
    # The runs must have exercised what they claim to check.
    assert summ.acked_writes > 10 * CI_SEEDS and summ.reads > 5 * CI_SEEDS
    assert summ.crashes > CI_SEEDS and summ.snapshots_installed > CI_SEEDS
    assert summ.conf_changes > CI_SEEDS // 2
    failing = ", ".join(f"{r.seed} ({violation_name(r)})" for r in summ.failures)
    assert not summ.failures, f"failing seeds: {failing}\n\n" + "\n\n".join(
        format_server_failure(r) for r in summ.failures[:3]
    )


def test_same_seed_same_trace() -> None:
    a = run_server_seed(3, nodes=5, steps=1500)
    b = run_server_seed(3, nodes=5, steps=1500)
    assert a.trace_hash == b.trace_hash
    assert a.stats == b.stats and a.trace_tail == b.trace_tail
    assert a.stats.acked_writes > 0 and a.stats.messages > 0


def test_different_seeds_differ() -> None:
    assert len({run_server_seed(s, nodes=3, steps=400).trace_hash for s in range(4)}) == 4


def test_same_seed_same_trace_across_processes_and_hash_seeds() -> None:
    """Nothing may depend on str hashing, temp dir names or other per-process state."""
    top = Path(__file__).resolve().parents[2]
    hashes = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "SIM_PYTHON": sys.executable}
        out = subprocess.run(
            [str(top / "scripts" / "sim"), "--server", "--seed", "8", "--steps", "1500"],
            capture_output=True, text=True, env=env, check=False,
        ).stdout
        assert "trace " in out, out
        hashes.add(out.split("trace ")[1].split()[0])
    assert len(hashes) == 1


@pytest.mark.parametrize(
    ("bug", "caught_as"),
    [
        ("drop-last-apply", {"STATE_AGREEMENT", "STATE_MACHINE", "DURABILITY"}),
        ("read-before-apply", {"STALE_READ"}),
        ("compact-without-snapshot", {"STATE_MACHINE", "CRASH"}),
    ],
)
def test_each_deliberate_bug_is_caught(bug: str, caught_as: set[str]) -> None:
    """The checks have teeth: every deliberate bug fails some of the first 30 seeds, with
    the invariant it breaks."""
    assert bug in SERVER_BUGS
    summ = run_server_seeds(0, 30, _mixed, DEFAULT_SERVER_STEPS, bug=bug, stop_at_first=True)
    assert summ.failures, f"bug {bug} went unnoticed in 30 seeds"
    r = summ.failures[0]
    assert violation_name(r) in caught_as, format_server_failure(r)
    assert f"--bug {bug}" in r.replay_command()

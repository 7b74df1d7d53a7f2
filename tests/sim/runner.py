"""Run many seeds and report: the engine behind `scripts/sim` and the pytest suites."""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from . import bugs
from .cluster import Simulation
from .result import RunResult

# The server-layer mode (--server) needs protobuf and lmdb; the pure-core mode only the
# standard library, so the server modules are imported only when asked for.
DEFAULT_SERVER_STEPS = 3000  # server_runner.DEFAULT_SERVER_STEPS (asserted there)
SERVER_BUG_NAMES = ("compact-without-snapshot", "drop-last-apply", "read-before-apply")

DEFAULT_STEPS = 10000

R = TypeVar("R")


def default_jobs() -> int:
    """Processes for many seeds: one per core (a seed is pure CPU and shares nothing with the
    others); SIM_JOBS overrides it."""
    return int(os.environ.get("SIM_JOBS", "0")) or os.cpu_count() or 1


def map_seeds(run: Callable[[int], R], seeds: range, jobs: int) -> Iterator[R]:
    """`run(seed)` for every seed, yielded in seed order whatever the number of processes, so
    a summary (and the first failure found) is the same as a sequential run's. `run` must be
    picklable (a module-level function, or a partial of one) when jobs > 1."""
    if jobs <= 1 or len(seeds) <= 1:
        yield from map(run, seeds)
        return
    # spawn, not fork: the caller (pytest, a CLI with threads) must not be forked mid-flight
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(seeds)), mp_context=context) as pool:
        try:
            # chunks amortize the hand-off; several per process keep the tail short
            yield from pool.map(run, seeds, chunksize=max(1, len(seeds) // (jobs * 8)))
        finally:
            pool.shutdown(cancel_futures=True)  # a caller that stops at a failure


def nodes_for(seed: int, nodes: str) -> int:
    """'3', '5' or 'mixed' (even seeds 3 nodes, odd seeds 5)."""
    if nodes == "mixed":
        return 3 if seed % 2 == 0 else 5
    return int(nodes)


def run_seed(
    seed: int,
    nodes: int,
    steps: int = DEFAULT_STEPS,
    bug: str | None = None,
    verbose: bool = False,
    commit_rule: bool = True,
) -> RunResult:
    with bugs.enabled(bug):
        sim = Simulation(seed, nodes, steps, verbose=verbose, bug=bug, commit_rule=commit_rule)
        return sim.run()


def _run_mixed_seed(seed: int, nodes: str, steps: int, bug: str | None,
                    commit_rule: bool) -> RunResult:
    return run_seed(seed, nodes_for(seed, nodes), steps, bug, commit_rule=commit_rule)


@dataclass(frozen=True, slots=True)
class Summary:
    runs: int
    failures: tuple[RunResult, ...]
    committed: int
    leaders: int
    reads: int
    crashes: int
    conf_changes: int


def run_seeds(
    start: int,
    count: int,
    nodes: str = "mixed",
    steps: int = DEFAULT_STEPS,
    bug: str | None = None,
    stop_at_first: bool = False,
    progress: Callable[[str], None] | None = None,
    commit_rule: bool = True,
    jobs: int = 1,
) -> Summary:
    failures: list[RunResult] = []
    committed = leaders = reads = crashes = confs = runs = 0
    run = functools.partial(_run_mixed_seed, nodes=nodes, steps=steps, bug=bug,
                            commit_rule=commit_rule)
    for r in map_seeds(run, range(start, start + count), jobs):
        seed = r.seed
        runs += 1
        committed += r.stats.committed
        leaders += r.stats.leaders
        reads += r.stats.reads_served
        crashes += r.stats.crashes
        confs += r.stats.conf_changes_applied
        if r.violation is not None:
            failures.append(r)
            if progress:
                progress(f"seed {seed}: {r.violation.invariant.name}")
            if stop_at_first:
                break
        if progress and runs % 50 == 0:
            progress(f"{runs}/{count} seeds, {len(failures)} failing")
    return Summary(runs, tuple(failures), committed, leaders, reads, crashes, confs)


def format_failure(r: RunResult) -> str:
    assert r.violation is not None
    lines = [
        f"FAILED seed {r.seed} ({r.nodes} nodes, {r.steps} steps"
        + (f", bug {r.bug}" if r.bug else "")
        + ")",
        f"  violated: {r.violation}",
        f"  last {len(r.trace_tail)} events:",
        *("    " + t for t in r.trace_tail),
        f"  replay: {r.replay_command()}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/sim", description="Deterministic Raft cluster simulator."
    )
    p.add_argument("--seeds", type=int, default=300, help="how many seeds to run")
    p.add_argument("--start", type=int, default=0, help="first seed")
    p.add_argument("--seed", type=int, help="run just this seed (replay)")
    p.add_argument("--nodes", default="mixed", choices=["3", "5", "mixed"])
    p.add_argument("--steps", type=int, help=f"events per seed ({DEFAULT_STEPS}; --server: "
                   f"{DEFAULT_SERVER_STEPS})")
    p.add_argument("--bug", choices=sorted(set(bugs.BUGS) | set(SERVER_BUG_NAMES)),
                   help="switch on a deliberate bug (server-layer ones need --server)")
    p.add_argument("--server", action="store_true",
                   help="drive the real server layer (LMDB storage, Applier) instead of the "
                   "pure core with a toy KV")
    p.add_argument("--stop", action="store_true", help="stop at the first failing seed")
    p.add_argument(
        "--no-commit-rule",
        action="store_true",
        help="leave out the COMMIT_RULE check (end-to-end checks only)",
    )
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="processes running seeds (default: one per core, or SIM_JOBS)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every event")
    a = p.parse_args(argv)
    a.steps_given = a.steps is not None
    if a.server:
        if a.bug is not None and a.bug not in SERVER_BUG_NAMES:
            p.error(f"--bug {a.bug} is a core bug; with --server use one of {SERVER_BUG_NAMES}")
        from .server_runner import server_main

        return server_main(a, nodes_for)
    if a.bug is not None and a.bug not in bugs.BUGS:
        p.error(f"--bug {a.bug} needs --server")
    if not a.steps_given:
        a.steps = DEFAULT_STEPS

    if a.seed is not None:
        nodes = nodes_for(a.seed, a.nodes)
        r = run_seed(a.seed, nodes, a.steps, a.bug, a.verbose, not a.no_commit_rule)
        s = r.stats
        print(
            f"seed {a.seed}: {s.steps} steps, {s.ticks} ticks, {s.committed} committed, "
            f"{s.leaders} leaders, {s.reads_served} reads, {s.crashes} crashes, "
            f"{s.conf_changes_applied} conf changes applied; trace {r.trace_hash[:16]}"
        )
        if r.violation is not None:
            print(format_failure(r))
            return 1
        print("OK")
        return 0

    def progress(line: str) -> None:
        print(line, flush=True)

    summ = run_seeds(
        a.start, a.seeds, a.nodes, a.steps, a.bug, a.stop, progress, not a.no_commit_rule,
        jobs=a.jobs,
    )
    print(
        f"{summ.runs} seeds ({a.start}..{a.start + summ.runs - 1}, nodes {a.nodes}, "
        f"{a.steps} steps): {len(summ.failures)} failing; {summ.committed} entries "
        f"committed, {summ.leaders} elections won, {summ.reads} reads checked, "
        f"{summ.crashes} crashes, {summ.conf_changes} conf changes applied"
    )
    for r in summ.failures[:5]:
        print(format_failure(r))
    if len(summ.failures) > 5:
        print("other failing seeds: " + " ".join(str(r.seed) for r in summ.failures[5:]))
    return 1 if summ.failures else 0


if __name__ == "__main__":
    sys.exit(main())

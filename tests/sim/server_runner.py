"""Many seeds of the server-layer simulation: the engine behind `scripts/sim --server`."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from dataclasses import dataclass

from . import runner
from .checkers import Violation
from .server_checks import ServerViolation
from .server_cluster import SERVER_BUGS, ServerRunResult, ServerSimulation

DEFAULT_SERVER_STEPS = 3000
# runner.py names these without importing the server modules: keep the two in step.
assert runner.DEFAULT_SERVER_STEPS == DEFAULT_SERVER_STEPS
assert tuple(sorted(SERVER_BUGS)) == runner.SERVER_BUG_NAMES


def violation_name(r: ServerRunResult) -> str:
    v = r.violation
    if v is None:
        return "OK"
    if isinstance(v, Violation | ServerViolation):
        return v.invariant.name
    return "CRASH"


def run_server_seed(seed: int, nodes: int, steps: int = DEFAULT_SERVER_STEPS,
                    bug: str | None = None, verbose: bool = False) -> ServerRunResult:
    return ServerSimulation(seed, nodes, steps, verbose=verbose, bug=bug).run()


def _run_sized_seed(seed: int, nodes: Callable[[int], int], steps: int,
                    bug: str | None) -> ServerRunResult:
    return run_server_seed(seed, nodes(seed), steps, bug)


@dataclass(frozen=True, slots=True)
class ServerSummary:
    runs: int
    failures: tuple[ServerRunResult, ...]
    applied: int
    acked_writes: int
    reads: int
    crashes: int
    snapshots_installed: int
    leaders: int
    conf_changes: int


def run_server_seeds(
    start: int, count: int, nodes: Callable[[int], int], steps: int = DEFAULT_SERVER_STEPS,
    bug: str | None = None, stop_at_first: bool = False,
    progress: Callable[[str], None] | None = None, jobs: int = 1,
) -> ServerSummary:
    """`nodes` must be picklable (a module-level function) when jobs > 1."""
    failures: list[ServerRunResult] = []
    applied = acked = reads = crashes = installs = leaders = confs = runs = 0
    run = functools.partial(_run_sized_seed, nodes=nodes, steps=steps, bug=bug)
    for r in runner.map_seeds(run, range(start, start + count), jobs):
        seed = r.seed
        runs += 1
        s = r.stats
        applied += s.applied
        acked += s.acked_writes
        reads += s.reads_served
        crashes += s.crashes
        installs += s.snapshots_installed
        leaders += s.leaders
        confs += s.conf_changes
        if r.violation is not None:
            failures.append(r)
            if progress:
                progress(f"seed {seed}: {violation_name(r)}")
            if stop_at_first:
                break
        if progress and runs % 50 == 0:
            progress(f"{runs}/{count} seeds, {len(failures)} failing")
    return ServerSummary(runs, tuple(failures), applied, acked, reads, crashes, installs,
                         leaders, confs)


def format_server_failure(r: ServerRunResult) -> str:
    lines = [
        f"FAILED seed {r.seed} ({r.nodes} nodes, {r.steps} steps"
        + (f", bug {r.bug}" if r.bug else "") + ", server layer)",
        f"  violated: {r.violation}",
        f"  last {len(r.trace_tail)} events:",
        *("    " + t for t in r.trace_tail),
        f"  replay: {r.replay_command()}",
    ]
    return "\n".join(lines)


def _nodes(spec: str, nodes_for: Callable[[int, str], int], seed: int) -> int:
    return nodes_for(seed, spec)


def server_main(a: argparse.Namespace, nodes_for: Callable[[int, str], int]) -> int:
    """`scripts/sim --server ...` (arguments parsed by runner.main)."""
    steps = a.steps if a.steps_given else DEFAULT_SERVER_STEPS
    if a.seed is not None:
        r = run_server_seed(a.seed, nodes_for(a.seed, a.nodes), steps, a.bug, a.verbose)
        s = r.stats
        print(
            f"seed {a.seed} (server): {s.steps} steps, {s.ticks} ticks, applied {s.applied}, "
            f"revision {s.revision}, {s.leaders} leaders, {s.acked_writes} acknowledged "
            f"writes, {s.reads_served} reads, {s.crashes} crashes, {s.snapshots_installed} "
            f"snapshots installed, {s.conf_changes} conf changes; trace {r.trace_hash[:16]}"
        )
        if r.violation is not None:
            print(format_server_failure(r))
            return 1
        print("OK")
        return 0
    summ = run_server_seeds(a.start, a.seeds, functools.partial(_nodes, a.nodes, nodes_for),
                            steps, a.bug, a.stop, lambda line: print(line, flush=True),
                            jobs=a.jobs)
    print(
        f"{summ.runs} seeds ({a.start}..{a.start + summ.runs - 1}, nodes {a.nodes}, {steps} "
        f"steps, server layer): {len(summ.failures)} failing; {summ.applied} entries applied, "
        f"{summ.acked_writes} writes acknowledged, {summ.reads} linearizable reads checked, "
        f"{summ.crashes} crashes, {summ.snapshots_installed} snapshots installed, "
        f"{summ.leaders} elections won, {summ.conf_changes} conf changes applied"
    )
    for r in summ.failures[:5]:
        print(format_server_failure(r))
    if len(summ.failures) > 5:
        print("other failing seeds: " + " ".join(str(r.seed) for r in summ.failures[5:]))
    return 1 if summ.failures else 0

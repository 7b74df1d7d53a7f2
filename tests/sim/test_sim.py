"""CI's simulation run: 300 seeds of 3- and 5-node clusters must show no violation.

On failure the message names each failing seed, the broken invariant, the last events
and the command that replays it (`scripts/sim --seed S --nodes N --steps K -v`).
A soak runs thousands more seeds: `scripts/sim --seeds 5000 --start 300`.
"""

from __future__ import annotations

from .runner import DEFAULT_STEPS, default_jobs, format_failure, run_seeds

CI_SEEDS = 300


def test_300_seeds_mixed_3_and_5_nodes_have_no_violation() -> None:
    summ = run_seeds(0, CI_SEEDS, nodes="mixed", steps=DEFAULT_STEPS, jobs=default_jobs())
    print(
        f"\n{summ.runs} seeds x {DEFAULT_STEPS} events: {len(summ.failures)} failing; "
        f"{summ.committed} entries committed, {summ.leaders} elections won, "
        f"{summ.reads} linearizable reads checked, {summ.crashes} crashes, "
        f"{summ.conf_changes} conf changes applied"
    )
    assert summ.runs == CI_SEEDS
    # The runs must have exercised what they claim to check.
    assert summ.committed > 10 * CI_SEEDS and summ.reads > CI_SEEDS
    assert summ.crashes > CI_SEEDS and summ.conf_changes > CI_SEEDS
    failing = ", ".join(
        f"{r.seed} ({r.violation.invariant.name})" for r in summ.failures if r.violation
    )
    assert not summ.failures, f"failing seeds: {failing}\n\n" + "\n\n".join(
        format_failure(r) for r in summ.failures[:3]
    )


def test_seeds_run_in_processes_sum_up_as_in_one() -> None:
    """The CI runs spread seeds over processes: same summary, failures and order as one."""
    one, two = (run_seeds(0, 12, nodes="mixed", steps=3000, bug="commit-old-term", jobs=jobs)
                for jobs in (1, 2))
    assert one.failures, "the bug must show, so that violations cross the process boundary"
    assert [(r.seed, r.trace_hash, str(r.violation)) for r in two.failures] == [
        (r.seed, r.trace_hash, str(r.violation)) for r in one.failures]
    assert (two.runs, two.committed, two.leaders, two.reads, two.crashes) == (
        one.runs, one.committed, one.leaders, one.reads, one.crashes)

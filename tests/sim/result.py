"""What one simulated run reports."""

from __future__ import annotations

from dataclasses import dataclass

from .checkers import Violation


@dataclass(frozen=True, slots=True)
class RunStats:
    steps: int
    ticks: int
    committed: int
    leaders: int
    reads_served: int
    crashes: int
    conf_changes_applied: int
    messages: int


@dataclass(frozen=True, slots=True)
class RunResult:
    seed: int
    nodes: int
    steps: int
    bug: str | None
    violation: Violation | None
    trace_tail: tuple[str, ...]
    trace_hash: str
    stats: RunStats
    commit_rule: bool = True

    def replay_command(self) -> str:
        cmd = f"scripts/sim --seed {self.seed} --nodes {self.nodes} --steps {self.steps}"
        if self.bug:
            cmd += f" --bug {self.bug}"
        if not self.commit_rule:
            cmd += " --no-commit-rule"
        return cmd + " -v"

"""Seeded fault schedules: the same seed always gives the same cluster, faults and traffic.

A `Schedule` is pure data drawn from `random.Random(seed)`: the cluster size, a sequence of
fault `Step`s (when, which kind, which target, for how long) and the client/watcher setup.
Which member is "the leader" is only known while running, so a step names a role ("leader",
"follower", "any") plus a random `pick` that chooses among the candidates then.

Faults run one at a time (inject, hold, heal, gap), like etcd's robustness failpoints, but
several per schedule, like a Jepsen nemesis.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from tests.faults.traffic import WatchSpec


class FaultKind(StrEnum):
    KILL = "kill"  # SIGKILL, restart at heal
    PAUSE = "pause"  # SIGSTOP, SIGCONT at heal
    PARTITION = "partition"  # iptables between members (namespaces only)
    DELAY = "delay"  # peer proxy: delay + jitter
    DROP = "drop"  # peer proxy: connection resets with a probability per chunk
    PEER_PAUSE = "peer-pause"  # peer proxy: stop forwarding (fallback's partition)
    REPLACE = "replace"  # member remove, wipe, member add, join
    POWER = "power"  # SIGKILL + drop of unsynced writes (tests/faults/lazyfs.py)


ALL_KINDS = tuple(FaultKind)
NEEDS_NETNS = frozenset({FaultKind.PARTITION})
NEEDS_PEERS = frozenset({FaultKind.PARTITION, FaultKind.REPLACE, FaultKind.DELAY,
                         FaultKind.DROP, FaultKind.PEER_PAUSE})


class Defect(StrEnum):
    NONE = ""
    NO_FSYNC = "no-fsync"
    READ_LOCAL = "read-local"
    VOTE_NOT_PERSISTED = "vote-not-persisted"


# Partition shapes; "leader" means the current leader is on the cut-off side.
PARTITION_VARIANTS = ("leader-minority", "minority", "asymmetric-in", "asymmetric-out",
                      "blackhole", "blackhole-leader")
ROLES = ("leader", "follower", "any")


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float  # offset from the start of the fault phase
    kind: FaultKind
    role: str  # "leader", "follower", "any" or "all"
    variant: str  # kind-specific shape, e.g. a partition shape or a delay profile
    hold_s: float
    pick: int  # chooses among candidates at run time

    def describe(self) -> str:
        variant = f"/{self.variant}" if self.variant else ""
        return f"{self.at_s:6.2f}s {self.kind}{variant} {self.role} for {self.hold_s:.2f}s"


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    size: int
    duration_s: float
    steps: tuple[Step, ...]
    clients: int
    key_count: int
    watchers: tuple[WatchSpec, ...]
    defect: Defect = Defect.NONE

    def __post_init__(self) -> None:
        assert self.size in (1, 3, 5)
        assert all(a.at_s <= b.at_s for a, b in zip(self.steps, self.steps[1:], strict=False))

    def describe(self) -> str:
        head = (f"seed={self.seed} size={self.size} duration={self.duration_s:.0f}s "
                f"clients={self.clients} keys={self.key_count} watchers={len(self.watchers)}"
                + (f" defect={self.defect}" if self.defect else ""))
        return "\n".join([head, *("  " + s.describe() for s in self.steps)])


def usable_kinds(kinds: Sequence[FaultKind], size: int, netns: bool,
                 power: bool) -> list[FaultKind]:
    # Power loss at any size: members started with `ip netns exec` hold copies of the other
    # members' LazyFS mounts, but LazyFS.stop ends a daemon by SIGTERM (closing /dev/fuse), so
    # those copies do not keep it alive and a remount completes.
    out = [k for k in kinds if (netns or k not in NEEDS_NETNS)
           and (size > 1 or k not in NEEDS_PEERS)
           and (power or k != FaultKind.POWER)]
    return out or [FaultKind.KILL]


def _biased(defect: Defect, size: int) -> list[FaultKind] | None:
    """The fault mix that exposes a defect (Jepsen-style targeting), or None for no bias."""
    if defect == Defect.NO_FSYNC:
        return [FaultKind.POWER]
    if defect == Defect.READ_LOCAL:
        return [FaultKind.PARTITION]
    if defect == Defect.VOTE_NOT_PERSISTED:
        return [FaultKind.PARTITION] if size == 3 else [FaultKind.KILL]
    return None


def make_schedule(seed: int, *, sizes: Sequence[int] = (1, 3, 5),
                  kinds: Sequence[FaultKind] = ALL_KINDS, duration_s: float = 20.0,
                  defect: Defect = Defect.NONE, netns: bool = True,
                  power: bool = False) -> Schedule:
    rng = random.Random(seed)
    size = rng.choice(list(sizes))
    pool = usable_kinds(_biased(defect, size) or list(kinds), size, netns, power)
    steps: list[Step] = []
    t = rng.uniform(0.5, 1.5)
    while t < duration_s - 1.0:
        kind = rng.choice(pool)
        role = rng.choice(ROLES)
        variant = ""
        hold = rng.uniform(1.0, 4.0)
        if kind == FaultKind.PARTITION and defect == Defect.VOTE_NOT_PERSISTED:
            # The bait for a forgotten vote: see nemesis._double_vote_bait (3 members).
            kind, variant, hold = FaultKind.KILL, "double-vote", rng.uniform(2.0, 4.0)
        elif kind == FaultKind.PARTITION:
            variant = rng.choice(PARTITION_VARIANTS)
            if defect == Defect.READ_LOCAL:
                variant = rng.choice(("leader-minority", "blackhole-leader"))
                hold = rng.uniform(3.0, 6.0)
        elif kind == FaultKind.DELAY:
            variant = rng.choice(("75+-50ms", "200+-100ms", "20+-20ms"))
        elif kind == FaultKind.DROP:
            variant = rng.choice(("0.05", "0.2", "0.5"))
        elif kind == FaultKind.KILL and defect == Defect.VOTE_NOT_PERSISTED:
            # Crashes in quick succession keep the cluster electing; a restarted member that
            # forgot its vote can then grant a second one in the same term.
            role = rng.choice(("all", "leader", "any", "follower"))
            hold = rng.uniform(0.1, 0.8)
        elif kind == FaultKind.KILL and size == 3 and netns and rng.random() < 0.2:
            # The forgotten-vote bait (nemesis._double_vote_bait) is a fault sequence a
            # correct server must survive too.
            variant, hold = "double-vote", rng.uniform(2.0, 4.0)
        elif kind == FaultKind.KILL and rng.random() < 0.15:
            # Crash everyone at once now and then: the restart depends on what is on disk.
            role = "all"
            hold = rng.uniform(0.2, 1.5)
        elif kind == FaultKind.POWER:
            role = "all"
            hold = rng.uniform(0.2, 1.0)
        elif kind == FaultKind.REPLACE:
            hold = 0.0
        steps.append(Step(round(t, 3), kind, role, variant, round(hold, 3),
                          rng.getrandbits(30)))
        t += hold + (rng.uniform(0.1, 0.8) if defect == Defect.VOTE_NOT_PERSISTED
                     else rng.uniform(0.5, 2.5))
        if kind == FaultKind.REPLACE:
            t += 3.0  # a replacement takes a few seconds of its own
    watchers = tuple(
        WatchSpec(start, prev_kv=rng.random() < 0.5, progress_notify=rng.random() < 0.5)
        for start in (0, 1, -3, 0, -10, 1)[: rng.randint(3, 6)]
    )
    return Schedule(seed, size, duration_s, tuple(steps), clients=6, key_count=5,
                    watchers=watchers, defect=defect)

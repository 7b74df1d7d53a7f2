"""Per-seed fault profiles ("swarm testing"): each seed draws its own mix of events and
network hostility, so that some runs are crash-heavy, some partition-heavy, some calm."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import IntEnum

from .network import NetworkFaults


class EventKind(IntEnum):
    ADVANCE = 0  # deliver the next due message, or tick every node when none is due
    PROPOSE = 1
    READ = 2
    CRASH = 3
    RESTART = 4
    PARTITION = 5
    HEAL = 6
    ADD_VOTER = 7
    ADD_LEARNER = 8
    PROMOTE = 9
    REMOVE = 10
    TRANSFER = 11
    COMPACT = 12
    CAMPAIGN = 13  # a node's election timer fires early (clock jump): concurrent elections


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """Invariant: weights are non-negative, ADVANCE's is positive (time always moves)."""

    weights: tuple[int, ...]  # indexed by EventKind
    net: NetworkFaults
    crash_in_ready: float  # chance that a node dies between sending and syncing a Ready
    quick_restart: float  # chance that a crashed node is restarted at once (a supervisor)
    max_msg_size: int  # RaftConfig.max_size_per_msg: small sizes split appends
    kill_new_leader: float  # chance that a new leader is killed a few events after winning
    leader_append_crash: float  # chance that a leader dies between appending and sending
    tick_skip: float  # chance that a node misses a tick (clock skew)

    def __post_init__(self) -> None:
        assert len(self.weights) == len(EventKind)
        assert all(w >= 0 for w in self.weights) and self.weights[EventKind.ADVANCE] > 0


def draw_profile(rng: random.Random) -> FaultProfile:
    def pick(*choices: int) -> int:
        return rng.choice(choices)

    w = [0] * len(EventKind)
    w[EventKind.ADVANCE] = 400
    w[EventKind.PROPOSE] = pick(10, 30, 60)
    w[EventKind.READ] = pick(5, 20, 40)
    w[EventKind.CRASH] = pick(0, 1, 2, 4)
    w[EventKind.RESTART] = pick(2, 4, 8)
    w[EventKind.PARTITION] = pick(0, 1, 2, 4)
    w[EventKind.HEAL] = pick(2, 4, 8)
    w[EventKind.ADD_VOTER] = pick(0, 1, 2)
    w[EventKind.ADD_LEARNER] = pick(0, 1)
    w[EventKind.PROMOTE] = pick(0, 1, 2)
    w[EventKind.REMOVE] = pick(0, 1, 2)
    w[EventKind.TRANSFER] = pick(0, 1, 3)
    w[EventKind.COMPACT] = pick(0, 2, 5)
    w[EventKind.CAMPAIGN] = pick(1, 3, 8)
    max_delay = pick(0, 1, 2, 3)
    net = NetworkFaults(
        drop=rng.choice((0.0, 0.01, 0.05, 0.15)),
        duplicate=rng.choice((0.0, 0.01, 0.05)),
        min_delay=0,
        max_delay=max_delay,
        long_delay=rng.choice((0.0, 0.01, 0.03)),
        long_delay_max=max(max_delay, 25),
    )
    return FaultProfile(
        weights=tuple(w),
        net=net,
        crash_in_ready=rng.choice((0.0, 0.002, 0.01, 0.03)),
        quick_restart=rng.choice((0.0, 0.5, 0.9)),
        max_msg_size=rng.choice((16, 128, 1024)),  # 16: one entry per append
        kill_new_leader=rng.choice((0.0, 0.0, 0.2, 0.5)),
        leader_append_crash=rng.choice((0.0, 0.0, 0.02, 0.1)),
        tick_skip=rng.choice((0.0, 0.05, 0.2)),
    )

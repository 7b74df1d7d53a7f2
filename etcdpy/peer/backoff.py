"""Reconnect delays: exponential, capped, jittered."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial_s: float = 0.1
    multiplier: float = 2.0
    max_s: float = 3.0  # a restarted peer is found again within this (plus one connect)

    def __post_init__(self) -> None:
        assert 0 < self.initial_s <= self.max_s and self.multiplier >= 1


class Backoff:
    """Delay before the next attempt. Jitter keeps members that lost a peer at the same moment
    from reconnecting in lockstep; "equal jitter" (half fixed, half random) keeps every delay at
    least half the nominal one, so a dead peer is never hammered."""

    __slots__ = ("_policy", "_rng", "_nominal")

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self._nominal = policy.initial_s

    def reset(self) -> None:
        self._nominal = self._policy.initial_s

    def next_delay(self) -> float:
        nominal = self._nominal
        self._nominal = min(self._policy.max_s, nominal * self._policy.multiplier)
        delay = nominal / 2 + self._rng.uniform(0, nominal / 2)
        assert 0 < delay <= self._policy.max_s
        return delay

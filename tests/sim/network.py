"""SimNetwork: a seeded, in-memory network of virtual-time message queues.

Messages wait in one priority queue keyed by their delivery time in virtual ticks.  The
network delays, drops, duplicates and reorders them according to `NetworkFaults`, and
partitions are a set of blocked directed (from, to) pairs, so that symmetric, asymmetric,
minority/majority and isolate-the-leader partitions are all the same mechanism.

Nothing here knows Raft: a message only needs integer `to` and `from_` attributes.
Every random choice comes from the `random.Random` handed in, so a run is a function of
its seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Addressed(Protocol):
    @property
    def to(self) -> int: ...

    @property
    def from_(self) -> int: ...


M = TypeVar("M", bound=Addressed)


@dataclass(frozen=True, slots=True)
class NetworkFaults:
    """How hostile the network is.  Probabilities are per message sent.

    Invariant: 0 <= probabilities <= 1 and 0 <= min_delay <= max_delay <= long_delay_max.
    """

    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: int = 0
    max_delay: int = 0
    long_delay: float = 0.0  # chance that a message takes up to long_delay_max ticks instead
    long_delay_max: int = 0

    def __post_init__(self) -> None:
        for p in (self.drop, self.duplicate, self.long_delay):
            assert 0.0 <= p <= 1.0, self
        assert 0 <= self.min_delay <= self.max_delay, self
        assert self.long_delay == 0.0 or self.long_delay_max >= self.max_delay, self


CALM = NetworkFaults()  # every message arrives, in order of sending, within the same tick


@dataclass(frozen=True, slots=True)
class NetworkStats:
    sent: int
    delivered: int
    dropped: int
    duplicated: int
    blocked: int
    overflowed: int


class SimNetwork(Generic[M]):
    """Invariant: len(queue) <= capacity; every queued message has deliver_at >= the
    time it was sent; (deliver_at, tiebreak, seq) is unique, so pops are deterministic."""

    def __init__(
        self, rng: random.Random, faults: NetworkFaults = CALM, capacity: int = 10_000
    ) -> None:
        assert capacity > 0
        self._rng = rng
        self.faults = faults
        self.capacity = capacity
        self._queue: list[tuple[int, float, int, M]] = []
        self._seq = 0
        self._blocked: set[tuple[int, int]] = set()
        self._sent = self._delivered = self._dropped = 0
        self._duplicated = self._blocked_count = self._overflowed = 0

    # --- sending and delivering -------------------------------------------------

    def send(self, msg: M, now: int) -> None:
        """Queue msg (maybe twice, maybe not at all) for delivery at now + a seeded delay."""
        self._sent += 1
        f = self.faults
        if f.drop and self._rng.random() < f.drop:
            self._dropped += 1
            return
        copies = 1
        if f.duplicate and self._rng.random() < f.duplicate:
            copies = 2
            self._duplicated += 1
        for _ in range(copies):
            self._enqueue(msg, now + self._delay())

    def _delay(self) -> int:
        f = self.faults
        if f.long_delay and self._rng.random() < f.long_delay:
            return self._rng.randint(f.max_delay, f.long_delay_max)
        if f.max_delay == f.min_delay:
            return f.min_delay
        return self._rng.randint(f.min_delay, f.max_delay)

    def _enqueue(self, msg: M, deliver_at: int) -> None:
        if len(self._queue) >= self.capacity:
            # A full queue loses the new message, as a congested link does; never grows.
            self._overflowed += 1
            return
        # The random tiebreak reorders messages due in the same tick; seq keeps the
        # order total (messages themselves are not comparable).
        tiebreak = self._rng.random() if self.faults != CALM else 0.0
        heapq.heappush(self._queue, (deliver_at, tiebreak, self._seq, msg))
        self._seq += 1

    def next_due(self) -> int | None:
        """Delivery time of the earliest queued message, or None when the queue is empty."""
        return self._queue[0][0] if self._queue else None

    def pop_due(self, now: int) -> M | None:
        """The next message due by `now` that a partition does not block, else None.

        A message whose path is blocked at delivery time is lost (a partition does
        not hold packets back until it heals)."""
        while self._queue and self._queue[0][0] <= now:
            _, _, _, msg = heapq.heappop(self._queue)
            if (msg.from_, msg.to) in self._blocked:
                self._blocked_count += 1
                continue
            self._delivered += 1
            return msg
        return None

    def drop_all(self) -> int:
        """Forget every queued message; returns how many."""
        n = len(self._queue)
        self._queue.clear()
        self._dropped += n
        return n

    def __len__(self) -> int:
        return len(self._queue)

    # --- partitions -----------------------------------------------------------------

    def block(self, frm: int, to: int) -> None:
        """Cut the one-way path frm -> to."""
        if frm != to:
            self._blocked.add((frm, to))

    def cut(self, a: int, b: int) -> None:
        """Cut both directions between a and b."""
        self.block(a, b)
        self.block(b, a)

    def partition(self, side_a: Iterable[int], side_b: Iterable[int]) -> None:
        """Symmetric partition: nobody in side_a can talk to anybody in side_b."""
        bs = list(side_b)
        for a in side_a:
            for b in bs:
                self.cut(a, b)

    def partition_one_way(self, senders: Iterable[int], receivers: Iterable[int]) -> None:
        """Asymmetric partition: senders' messages to receivers are lost; replies still flow."""
        rs = list(receivers)
        for s in senders:
            for r in rs:
                self.block(s, r)

    def isolate(self, node: int, others: Iterable[int]) -> None:
        self.partition([node], [o for o in others if o != node])

    def heal(self) -> None:
        self._blocked.clear()

    def is_blocked(self, frm: int, to: int) -> bool:
        return (frm, to) in self._blocked

    @property
    def partitioned(self) -> bool:
        return bool(self._blocked)

    def stats(self) -> NetworkStats:
        return NetworkStats(
            sent=self._sent,
            delivered=self._delivered,
            dropped=self._dropped,
            duplicated=self._duplicated,
            blocked=self._blocked_count,
            overflowed=self._overflowed,
        )

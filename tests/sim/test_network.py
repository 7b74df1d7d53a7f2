"""SimNetwork on its own: delays, drops, duplicates, reordering, partitions, bounds."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .network import CALM, NetworkFaults, SimNetwork


@dataclass(frozen=True, slots=True)
class Msg:
    to: int
    from_: int
    n: int = 0


def drain(net: SimNetwork[Msg], until: int) -> list[tuple[int, Msg]]:
    """Every message delivered by time `until`, with the time it was delivered."""
    out: list[tuple[int, Msg]] = []
    for now in range(until + 1):
        while (m := net.pop_due(now)) is not None:
            out.append((now, m))
    return out


def test_calm_network_delivers_everything_in_order_at_once() -> None:
    net: SimNetwork[Msg] = SimNetwork(random.Random(1), CALM)
    for i in range(20):
        net.send(Msg(2, 1, i), now=0)
    got = drain(net, 0)
    assert [m.n for _, m in got] == list(range(20))
    assert all(t == 0 for t, _ in got)


def test_delays_stay_within_bounds_and_reorder() -> None:
    faults = NetworkFaults(min_delay=1, max_delay=4)
    net: SimNetwork[Msg] = SimNetwork(random.Random(7), faults)
    for i in range(200):
        net.send(Msg(2, 1, i), now=10)
    got = drain(net, 20)
    assert len(got) == 200
    assert all(11 <= t <= 14 for t, _ in got)
    order = [m.n for _, m in got]
    assert order != sorted(order)  # seeded delays and tiebreaks reorder messages


def test_drop_and_duplicate_probabilities() -> None:
    net: SimNetwork[Msg] = SimNetwork(random.Random(3), NetworkFaults(drop=1.0))
    for i in range(50):
        net.send(Msg(2, 1, i), now=0)
    assert drain(net, 5) == []
    assert net.stats().dropped == 50

    net = SimNetwork(random.Random(3), NetworkFaults(duplicate=1.0))
    for i in range(10):
        net.send(Msg(2, 1, i), now=0)
    got = sorted(m.n for _, m in drain(net, 5))
    assert got == sorted(list(range(10)) * 2)
    assert net.stats().duplicated == 10


def test_some_but_not_all_dropped_at_a_middling_rate() -> None:
    net: SimNetwork[Msg] = SimNetwork(random.Random(11), NetworkFaults(drop=0.3))
    for i in range(1000):
        net.send(Msg(2, 1, i), now=0)
    n = len(drain(net, 0))
    assert 500 < n < 900


def test_long_delays_happen_and_are_bounded() -> None:
    faults = NetworkFaults(max_delay=1, long_delay=0.5, long_delay_max=30)
    net: SimNetwork[Msg] = SimNetwork(random.Random(5), faults)
    for i in range(100):
        net.send(Msg(2, 1, i), now=0)
    times = [t for t, _ in drain(net, 40)]
    assert len(times) == 100 and max(times) <= 30 and max(times) > 1


def test_symmetric_and_asymmetric_partitions_and_heal() -> None:
    net: SimNetwork[Msg] = SimNetwork(random.Random(1), CALM)
    net.partition([1], [2, 3])
    net.partition_one_way([2], [3])
    for frm, to in [(1, 2), (2, 1), (3, 1), (2, 3), (3, 2)]:
        net.send(Msg(to, frm), now=0)
    got = {(m.from_, m.to) for _, m in drain(net, 0)}
    assert got == {(3, 2)}  # only 3 -> 2 survives: 2 -> 3 is cut one way
    assert net.stats().blocked == 4
    net.heal()
    assert not net.partitioned
    net.send(Msg(2, 1), now=1)
    assert [(m.from_, m.to) for _, m in drain(net, 1)] == [(1, 2)]


def test_isolate_cuts_one_node_from_all_others() -> None:
    net: SimNetwork[Msg] = SimNetwork(random.Random(1), CALM)
    net.isolate(2, [1, 2, 3])
    assert net.is_blocked(2, 1) and net.is_blocked(1, 2) and net.is_blocked(3, 2)
    assert not net.is_blocked(1, 3)


def test_a_message_in_flight_when_a_partition_starts_is_lost() -> None:
    net: SimNetwork[Msg] = SimNetwork(random.Random(1), NetworkFaults(min_delay=2, max_delay=2))
    net.send(Msg(2, 1), now=0)
    net.cut(1, 2)
    assert drain(net, 5) == []


def test_capacity_bounds_the_queue() -> None:
    net: SimNetwork[Msg] = SimNetwork(random.Random(1), CALM, capacity=10)
    for i in range(25):
        net.send(Msg(2, 1, i), now=0)
    assert len(net) == 10
    assert net.stats().overflowed == 15


def test_same_seed_same_schedule() -> None:
    faults = NetworkFaults(drop=0.1, duplicate=0.1, max_delay=3, long_delay=0.05, long_delay_max=9)

    def run(seed: int) -> list[tuple[int, int]]:
        net: SimNetwork[Msg] = SimNetwork(random.Random(seed), faults)
        for i in range(100):
            net.send(Msg(2, 1, i), now=i // 10)
        return [(t, m.n) for t, m in drain(net, 30)]

    assert run(42) == run(42)
    assert run(42) != run(43)

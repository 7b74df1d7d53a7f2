"""Schedules are a pure function of the seed and the options, and respect what is possible."""

from __future__ import annotations

from tests.faults.runner import Options
from tests.faults.schedule import Defect, FaultKind, make_schedule


def test_same_seed_same_schedule() -> None:
    a = make_schedule(42)
    b = make_schedule(42)
    assert a == b
    assert a.describe() == b.describe()


def test_seeds_differ() -> None:
    described = {make_schedule(seed).describe() for seed in range(20)}
    assert len(described) == 20


def test_faults_fill_the_duration() -> None:
    for seed in range(30):
        s = make_schedule(seed, duration_s=20.0)
        assert s.steps, s.describe()
        assert s.steps[0].at_s < 2.0
        assert s.steps[-1].at_s + s.steps[-1].hold_s >= 20.0 - 1.0 - 2.5 - 3.0


def test_single_member_gets_only_process_faults() -> None:
    for seed in range(30):
        s = make_schedule(seed, sizes=(1,))
        assert s.size == 1
        assert {st.kind for st in s.steps} <= {FaultKind.KILL, FaultKind.PAUSE}


def test_no_partitions_without_namespaces() -> None:
    kinds = set()
    for seed in range(30):
        kinds |= {st.kind for st in make_schedule(seed, sizes=(3, 5), netns=False).steps}
    assert FaultKind.PARTITION not in kinds
    assert FaultKind.PEER_PAUSE in kinds  # the fallback's partition


def test_power_loss_only_when_available() -> None:
    kinds = set()
    for seed in range(30):
        kinds |= {st.kind for st in make_schedule(seed, power=False).steps}
    assert FaultKind.POWER not in kinds


def test_power_loss_at_every_cluster_size() -> None:
    for size in (1, 3, 5):
        kinds = set()
        for seed in range(30):
            kinds |= {st.kind for st in make_schedule(seed, sizes=(size,), power=True).steps}
        assert FaultKind.POWER in kinds, size


def test_read_local_defect_targets_the_leader_with_partitions() -> None:
    s = make_schedule(5, sizes=(3, 5), defect=Defect.READ_LOCAL)
    assert {st.kind for st in s.steps} == {FaultKind.PARTITION}
    assert {st.variant for st in s.steps} <= {"leader-minority", "blackhole-leader"}


def test_options_round_trip_and_replay_command() -> None:
    o = Options(sizes=(3,), kinds=(FaultKind.KILL, FaultKind.PARTITION), duration_s=25.0,
                defect=Defect.READ_LOCAL, netns=False)
    assert Options.from_json(o.to_json()) == o
    assert o.schedule(9) == o.schedule(9)
    cmd = o.replay(9)
    assert "--seed 9" in cmd and "--defect read-local" in cmd and "--loopback" in cmd

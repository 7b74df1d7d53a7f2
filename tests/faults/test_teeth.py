"""The harness has teeth: with a deliberate defect switched on, it reports a violation.

Each defect (see `etcdpy/testdefects.py` and etcd's own `--unsafe-no-fsync`) gets schedules
whose faults are biased toward what exposes it, as Jepsen targets its nemeses: power loss for
missing fsyncs, partitions that isolate the leader for local reads, crashes during elections for
a forgotten vote. Seeds are tried in order until one is reported as a safety violation (by the
linearizability/watch checkers or a HashKV mismatch; a harness error or an unavailable cluster
does not count); the test fails if none is within the bound, and prints how many it took.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import netlab
from tests.faults import lazyfs
from tests.faults.runner import Options, power_available, run_one
from tests.faults.schedule import ALL_KINDS, Defect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_SCHEDULES = 20
DURATION_S = 20.0
FIRST_SEED = int(os.environ.get("FAULTS_TEETH_SEED", "1"))


def schedules_to_catch(options: Options, tmp_path: Path) -> int:
    tried: list[str] = []
    for n, seed in enumerate(range(FIRST_SEED, FIRST_SEED + MAX_SCHEDULES), start=1):
        result = run_one(seed, options, tmp_path)
        tried.append(f"seed {seed}: {'ok' if result.ok else result.kind}")
        if result.safety_violation:
            print(f"defect {options.defect} caught by schedule {n} (seed {seed}, "
                  f"{result.kind}): {result.explanation[:1500]}")
            return n
    raise AssertionError(f"defect {options.defect} not caught in {MAX_SCHEDULES} schedules: "
                         + "; ".join(tried))


def _netns() -> None:
    reason = netlab.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.timeout(MAX_SCHEDULES * 400)
def test_read_local_is_caught(tmp_path: Path) -> None:
    """A leader answering linearizable reads alone is stale once it is cut off."""
    _netns()
    n = schedules_to_catch(Options(sizes=(3, 5), kinds=ALL_KINDS, duration_s=DURATION_S,
                                   defect=Defect.READ_LOCAL), tmp_path)
    assert 1 <= n <= MAX_SCHEDULES


@pytest.mark.timeout(MAX_SCHEDULES * 400)
def test_vote_not_persisted_is_caught(tmp_path: Path) -> None:
    """A member that forgets its vote on restart can elect two leaders in one term."""
    _netns()
    n = schedules_to_catch(Options(sizes=(3,), kinds=ALL_KINDS, duration_s=DURATION_S,
                                   defect=Defect.VOTE_NOT_PERSISTED), tmp_path)
    assert 1 <= n <= MAX_SCHEDULES


@pytest.mark.timeout(MAX_SCHEDULES * 400)
def test_no_fsync_is_caught(tmp_path: Path) -> None:
    """Without fsync, a power loss takes acknowledged writes with it."""
    if not power_available():
        pytest.skip(f"no power-loss faults here: {lazyfs.unavailable_reason()}")
    n = schedules_to_catch(Options(sizes=(1,), kinds=ALL_KINDS, duration_s=DURATION_S,
                                   defect=Defect.NO_FSYNC, netns=netlab.unavailable_reason()
                                   is None), tmp_path)
    assert 1 <= n <= MAX_SCHEDULES

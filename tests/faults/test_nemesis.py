"""The nemesis heals as an operator's supervisor would: a member that exits while starting is
started again until it serves (CI seed 1011: a member added by `replace` gave up joining while
the others restarted from a power loss, and the schedule then failed on a dead member)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.faults.cluster import FaultCluster, loopback_places, settle
from tests.faults.nemesis import _answers, _restart

pytestmark = [pytest.mark.e2e]


def test_a_joining_member_that_gives_up_is_started_again(tmp_path: Path) -> None:
    cluster = FaultCluster(tmp_path, [], places=loopback_places(3, slot=251))
    try:
        cluster.start()
        settle(cluster)
        m1, m2, m3 = cluster.fmembers
        # m2 is removed and added back under a new ID, ready to join but not started; then the
        # two members it would ask for the member list go down.
        cluster.replace(m2, start=False)
        m1.kill()
        m3.kill()
        # They come back only after m2 has tried and given up at least once.
        later = threading.Timer(3.0, lambda: (m1.restart(), m3.restart()))
        later.start()
        try:
            _restart(cluster, [m2])
        finally:
            later.join()
        assert _answers(cluster, m2), m2.log_tail()
        assert m2.log_path is not None
        attempts = m2.log_path.read_text().count("cannot fetch cluster info from peer urls")
        assert attempts >= 1, "m2 never gave up, so it was never started again"
        settle(cluster)
        assert {m.name for m in cluster.fmembers} == {"m1", "m2", "m3"}
    finally:
        cluster.close()

"""The recorded traffic is a faithful record: against one healthy member, every acknowledged write
has its own revision, the watchers see exactly those writes, and a stopped member's refusals are
recorded as failures that took no effect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import wait_for
from tests.faults.cluster import FaultCluster, FaultMember, loopback_places, settle
from tests.faults.history import History, OpKind
from tests.faults.traffic import Traffic, WatchSpec, keys

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FaultCluster]:
    c = FaultCluster(tmp_path, places=loopback_places(1, slot=251))
    try:
        c.start()
        settle(c)
        yield c
    finally:
        c.close()


def test_traffic_records_writes_and_watches(cluster: FaultCluster) -> None:
    history = History(seed=7, keys=keys(3))
    watchers = (WatchSpec(1, prev_kv=True, progress_notify=True),
                WatchSpec(0, prev_kv=False, progress_notify=False))
    traffic = Traffic(history, lambda: cluster.endpoints, 3, watchers, seed=7).start()
    traffic.start_late_watchers()
    wait_for("some operations", lambda: len(history.operations) >= 150 or None)
    final = traffic.final_write(cluster.endpoints)
    assert final.response is not None
    last = final.response.revision
    # Let the watchers catch up with the final write, then stop.
    wait_for("watchers at the final write", lambda: all(
        any(e.kv.mod_revision == last for r in w.responses for e in r.events)
        for w in history.watches) or None)
    traffic.stop()

    ops = history.operations
    assert all(op.response is not None for op in ops), [op.error for op in ops if op.error]
    assert {op.request.kind for op in ops} >= {OpKind.GET, OpKind.PUT, OpKind.CAS}
    writes = {op.response.revision: op for op in ops if op.response is not None
              and op.request.kind in (OpKind.PUT, OpKind.CAS) and op.response.succeeded}
    puts = [op for op in ops if op.request.kind == OpKind.PUT]
    assert len({op.response.revision for op in puts if op.response}) == len(puts)
    # The watcher from revision 1 saw every acknowledged put and CAS with its value.
    (from_start,) = [w for w in history.watches if w.start_revision == 1]
    seen = {e.kv.mod_revision: e for r in from_start.responses for e in r.events}
    for rev, op in writes.items():
        assert seen[rev].kv.value == op.request.value
    revisions = [e.kv.mod_revision for r in from_start.responses for e in r.events]
    assert revisions == sorted(revisions)


def test_stopped_member_refusals_take_no_effect(cluster: FaultCluster) -> None:
    (member,) = cluster.fmembers
    assert isinstance(member, FaultMember)
    member.kill()
    history = History(seed=8, keys=keys(2))
    traffic = Traffic(history, lambda: cluster.endpoints, 2, (), seed=8).start()
    wait_for("refused operations", lambda: len(history.operations) >= 10 or None)
    traffic.stop()
    assert all(op.response is None for op in history.operations)
    assert all(op.definite_failure for op in history.operations), [
        op.error for op in history.operations if not op.definite_failure]

"""Progress transitions, the Inflights window and the ProgressTracker."""

from __future__ import annotations

import pytest

from etcdpy.raft.status import ProgressState
from etcdpy.raft.tracker import Inflights, Progress, ProgressTracker, TrackerConfig


def new_pr(match: int = 0, nxt: int = 1, size: int = 4, max_bytes: int = 0) -> Progress:
    return Progress(match=match, next=nxt, inflights=Inflights(size, max_bytes))


def test_inflights_count_limit() -> None:
    f = Inflights(3)
    for i in (5, 7, 9):
        assert not f.full()
        f.add(i, 10)
    assert f.full() and f.count() == 3
    with pytest.raises(AssertionError):
        f.add(11, 1)
    f.free_le(7)
    assert f.count() == 1 and f.bytes == 10 and not f.full()
    f.free_le(100)
    assert f.count() == 0 and f.bytes == 0


def test_inflights_free_first_one() -> None:
    f = Inflights(2)
    f.add(3, 5)
    f.add(4, 6)
    f.free_first_one()
    assert f.count() == 1 and f.bytes == 6 and not f.full()


def test_inflights_byte_limit() -> None:
    f = Inflights(10, max_bytes=100)
    f.add(1, 60)
    assert not f.full()
    f.add(2, 40)
    assert f.full()
    f.free_le(1)
    assert not f.full() and f.bytes == 40


def test_inflights_indexes_must_increase() -> None:
    f = Inflights(10)
    f.add(5, 1)
    with pytest.raises(AssertionError):
        f.add(5, 1)


def test_probe_sends_one_append_then_pauses() -> None:
    pr = new_pr(match=3, nxt=4)
    assert not pr.is_paused()
    pr.sent_entries(2, 20)
    assert pr.is_paused() and pr.next == 4  # a probe does not advance next
    assert pr.maybe_update(5)
    assert not pr.is_paused() and pr.match == 5 and pr.next == 6


def test_replicate_pipelines_until_the_window_is_full() -> None:
    pr = new_pr(match=3, nxt=4, size=2)
    pr.become_replicate()
    pr.sent_entries(2, 20)
    assert pr.next == 6 and not pr.is_paused()
    pr.sent_entries(1, 10)
    assert pr.next == 7 and pr.is_paused()
    pr.maybe_update(5)
    pr.inflights.free_le(5)
    assert not pr.is_paused()


def test_maybe_decr_to_in_replicate_and_probe() -> None:
    pr = new_pr(match=5, nxt=10)
    pr.become_replicate()
    pr.next = 10
    assert not pr.maybe_decr_to(5, 5)  # stale: at or below match
    assert pr.maybe_decr_to(8, 6)
    assert pr.next == 6  # replicate falls back to match + 1
    probe = new_pr(match=0, nxt=10)
    assert not probe.maybe_decr_to(5, 3)  # not the outstanding probe (next - 1 == 9)
    assert probe.maybe_decr_to(9, 3)
    assert probe.next == 4  # follower hint + 1
    assert probe.maybe_decr_to(3, 100)
    assert probe.next == 3  # never beyond the rejected index


def test_snapshot_state_transitions() -> None:
    pr = new_pr(match=2, nxt=3)
    pr.become_snapshot(10)
    assert pr.state == ProgressState.SNAPSHOT and pr.is_paused() and pr.next == 11
    pr.become_probe()
    assert pr.state == ProgressState.PROBE and pr.next == 11  # after the snapshot
    pr.become_snapshot(10)
    pr.pending_snapshot = 0  # a failed snapshot is forgotten
    pr.become_probe()
    assert pr.next == 3


def test_sending_in_snapshot_state_is_a_bug() -> None:
    pr = new_pr()
    pr.become_snapshot(5)
    with pytest.raises(AssertionError):
        pr.sent_entries(1, 1)


def make_tracker(voters: set[int], learners: set[int] = frozenset()) -> ProgressTracker:  # type: ignore[assignment]
    t = ProgressTracker(max_inflight=4)
    t.config = TrackerConfig(frozenset(voters), frozenset(learners))
    t.progress = {i: new_pr() for i in voters | set(learners)}
    for i in learners:
        t.progress[i].is_learner = True
    t.check()
    return t


def test_tracker_committed_ignores_learners() -> None:
    t = make_tracker({1, 2, 3}, {4, 5})
    for i, m in {1: 9, 2: 3, 3: 1, 4: 9, 5: 9}.items():
        t.progress[i].maybe_update(m)
    assert t.committed() == 3


def test_tracker_votes_first_vote_counts() -> None:
    t = make_tracker({1, 2, 3})
    t.record_vote(1, True)
    t.record_vote(2, False)
    t.record_vote(2, True)  # ignored: 2 already voted
    assert t.tally_votes()[:2] == (1, 1)
    t.record_vote(3, True)
    assert t.tally_votes()[2].name == "WON"


def test_tracker_quorum_active() -> None:
    t = make_tracker({1, 2, 3}, {4})
    t.progress[1].recent_active = True
    t.progress[4].recent_active = True
    assert not t.quorum_active()
    t.progress[2].recent_active = True
    assert t.quorum_active()

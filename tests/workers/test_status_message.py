"""The status message a member pushes to its workers: round trip, and what a worker keeps."""

from __future__ import annotations

from etcdpy.worker.status import MemberStatus, StatusView


def test_status_round_trips_and_other_messages_are_ignored() -> None:
    status = MemberStatus(raft_term=7, leader=0xABCDEF0123456789, is_learner=True)
    assert MemberStatus.decode(status.encode()) == status
    assert MemberStatus.decode(b"") is None
    assert MemberStatus.decode(b"X" + status.encode()[1:]) is None
    assert MemberStatus.decode(status.encode()[:-1]) is None


def test_a_worker_keeps_the_highest_term() -> None:
    view = StatusView()
    view.on_message(MemberStatus(5, 1, False).encode())
    view.on_message(MemberStatus(4, 2, False).encode())  # reordered: older, ignored
    assert view.current == MemberStatus(5, 1, False)
    view.on_message(MemberStatus(5, 0, False).encode())  # same term, leader lost
    view.on_message(b"garbage")
    assert view.current == MemberStatus(5, 0, False)

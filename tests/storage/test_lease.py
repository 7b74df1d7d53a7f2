"""Lessor rules with a fake clock (no real time anywhere)."""

from __future__ import annotations

import pytest

from etcdpy.storage.errors import LeaseExistsError, LeaseNotFoundError
from etcdpy.storage.lease import LeaseTTLTooLargeError, Lessor, NotPrimaryError
from etcdpy.storage.lease_store import LeaseRecord


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_only_primary_expires(clock: FakeClock) -> None:
    le = Lessor(clock)
    le.grant(1, 10)
    clock.advance(100)
    assert le.expired(10) == []  # follower: leases never expire locally
    le.promote(0)
    assert le.expired(10) == []  # promote refreshed the deadline
    clock.advance(9.5)
    assert le.expired(10) == []
    clock.advance(1)
    assert le.expired(10) == [1]
    assert le.expired(10) == []  # reported once, then again after the retry interval
    clock.advance(3.1)
    assert le.expired(10) == [1]
    le.revoke(1)
    clock.advance(10)
    assert le.expired(10) == []


def test_renew_resets_and_rejects(clock: FakeClock) -> None:
    le = Lessor(clock)
    le.grant(1, 10)
    with pytest.raises(NotPrimaryError):
        le.renew(1)
    le.promote(0)
    clock.advance(8)
    assert le.renew(1) == 10
    clock.advance(8)
    assert le.expired(5) == []
    assert le.remaining_ttl(1) == 2
    clock.advance(3)
    with pytest.raises(LeaseNotFoundError):
        le.renew(1)  # expired leases cannot be kept alive again
    with pytest.raises(LeaseNotFoundError):
        le.renew(99)
    assert le.remaining_ttl(99) == -1


def test_grant_rules(clock: FakeClock) -> None:
    le = Lessor(clock, min_ttl=5)
    assert le.grant(1, 2).ttl == 5
    with pytest.raises(LeaseExistsError):
        le.grant(1, 10)
    with pytest.raises(LeaseTTLTooLargeError):
        le.grant(2, 9_000_000_001)


def test_limit_and_order(clock: FakeClock) -> None:
    le = Lessor(clock)
    le.promote(0)
    for i in range(1, 11):
        le.grant(i, i)
    clock.advance(20)
    first = le.expired(4)
    assert first == [1, 2, 3, 4]
    assert le.expired(100) == [5, 6, 7, 8, 9, 10]


def test_promote_uses_checkpoint_and_extend_demote_forgets(clock: FakeClock) -> None:
    le = Lessor(clock)
    le.grant(1, 100)
    le.checkpoint(1, 7)
    le.promote(2)
    clock.advance(8)
    assert le.expired(5) == []
    clock.advance(1.5)
    assert le.expired(5) == [1]
    le.demote()
    clock.advance(1000)
    assert le.expired(5) == []
    assert le.remaining_ttl(1) == 100


def test_attach_detach_revoke_and_recover(clock: FakeClock) -> None:
    le = Lessor(clock)
    le.grant(7, 10)
    le.attach(7, [b"b", b"a"])
    le.detach(7, [b"b"])
    le.attach(7, [b"c"])
    assert le.revoke(7) == [b"a", b"c"]
    with pytest.raises(LeaseNotFoundError):
        le.attach(7, [b"x"])
    le.recover([(LeaseRecord(3, 30, 0), [b"k"]), (LeaseRecord(4, 40, 12), [])])
    assert [lease.id for lease in le.leases()] == [3, 4]
    le.promote(0)
    clock.advance(12.5)
    assert le.expired(5) == [4]  # its checkpointed 12 s, not its 40 s TTL
    assert le.lookup(3) is not None and le.lookup(3).keys == {b"k"}

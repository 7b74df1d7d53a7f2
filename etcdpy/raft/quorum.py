"""Majority quorum arithmetic (pure functions; only simple majorities, no joint configs)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import IntEnum


class VoteResult(IntEnum):
    PENDING = 0
    LOST = 1
    WON = 2


def majority(n: int) -> int:
    return n // 2 + 1


def committed_index(voters: Collection[int], acked: Mapping[int, int]) -> int:
    """The highest index acknowledged by a majority of voters (missing voters count as 0).

    An empty configuration commits everything (returns a maximal index), as etcd does,
    so that a joint half with no voters never holds back the other half.
    """
    if not voters:
        return 1 << 63
    srt = sorted((acked.get(v, 0) for v in voters), reverse=True)
    return srt[majority(len(voters)) - 1]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority is out of reach, else PENDING."""
    if not voters:
        return VoteResult.WON
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    missing = len(voters) - granted - rejected
    q = majority(len(voters))
    if granted >= q:
        return VoteResult.WON
    if granted + missing >= q:
        return VoteResult.PENDING
    return VoteResult.LOST

"""Majority arithmetic, checked against a naive model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etcdpy.raft.quorum import VoteResult, committed_index, vote_result


def test_committed_index_examples() -> None:
    assert committed_index({1}, {1: 5}) == 5
    assert committed_index({1, 2, 3}, {1: 5, 2: 3}) == 3
    assert committed_index({1, 2, 3}, {1: 5}) == 0
    assert committed_index({1, 2, 3, 4}, {1: 9, 2: 8, 3: 7, 4: 1}) == 7


@given(st.dictionaries(st.integers(1, 7), st.integers(0, 20), min_size=1))
def test_committed_index_is_the_largest_index_a_majority_has(acked: dict[int, int]) -> None:
    voters = set(acked)
    got = committed_index(voters, acked)
    # Naive: the largest i such that more than half the voters acked >= i.
    naive = max(i for i in range(0, 21) if sum(v >= i for v in acked.values()) * 2 > len(voters))
    assert got == naive


def test_vote_result() -> None:
    v = {1, 2, 3}
    assert vote_result(v, {1: True}) == VoteResult.PENDING
    assert vote_result(v, {1: True, 2: True}) == VoteResult.WON
    assert vote_result(v, {1: True, 2: False, 3: False}) == VoteResult.LOST
    assert vote_result(v, {1: True, 4: True}) == VoteResult.PENDING  # 4 is not a voter
    assert vote_result({1, 2, 3, 4}, {1: True, 2: True, 3: False}) == VoteResult.PENDING
    assert vote_result({1, 2, 3, 4}, {1: True, 2: False, 3: False}) == VoteResult.LOST

"""Value types: the ConfChange wire encoding and the ConfState invariant."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdpy.raft import ConfChange, ConfChangeType, ConfState, MessageType


@given(
    st.sampled_from(list(ConfChangeType)),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=64),
)
def test_conf_change_round_trips(t: ConfChangeType, node_id: int, ctx: bytes) -> None:
    cc = ConfChange(t, node_id, ctx)
    assert ConfChange.decode(cc.encode()) == cc


def test_conf_change_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        ConfChange.decode(b"\x00\x01")
    good = ConfChange(ConfChangeType.ADD_NODE, 2, b"ctx").encode()
    with pytest.raises(ValueError):
        ConfChange.decode(good + b"extra")


def test_conf_state_must_be_sorted_and_disjoint() -> None:
    with pytest.raises(AssertionError):
        ConfState(voters=(2, 1))
    with pytest.raises(AssertionError):
        ConfState(voters=(1, 2), learners=(2,))


def test_message_numbering_matches_raftpb() -> None:
    assert MessageType.APP == 3 and MessageType.SNAP == 7 and MessageType.PRE_VOTE_RESP == 18

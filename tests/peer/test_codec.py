"""Round trips between etcdpy.raft messages and the peerpb wire form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdpy._pb.peerpb import peer_pb2 as pb
from etcdpy.peer.codec import CodecError, decode_message, encode_message, message_size
from etcdpy.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

u64 = st.integers(min_value=0, max_value=2**64 - 1)
small = st.integers(min_value=0, max_value=2**40)

entries = st.builds(
    Entry,
    term=u64,
    index=u64,
    type=st.sampled_from(list(EntryType)),
    data=st.binary(max_size=64),
)


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    ids = draw(st.sets(st.integers(min_value=1, max_value=2**64 - 1), max_size=7))
    learners = draw(st.sets(st.sampled_from(sorted(ids)), max_size=3)) if ids else set()
    return ConfState(voters=tuple(sorted(ids - learners)), learners=tuple(sorted(learners)))


snapshots = st.builds(
    Snapshot,
    data=st.binary(max_size=128),
    metadata=st.builds(SnapshotMetadata, conf_state=conf_states(), index=u64, term=u64),
)

messages = st.builds(
    Message,
    type=st.sampled_from(list(MessageType)),
    to=u64,
    from_=u64,
    term=u64,
    log_term=u64,
    index=u64,
    entries=st.lists(entries, max_size=5).map(tuple),
    commit=u64,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=u64,
    context=st.binary(max_size=32),
)


@given(messages)
def test_round_trip_through_wire_bytes(msg: Message) -> None:
    wire = encode_message(msg).SerializeToString()
    decoded = decode_message(pb.Message.FromString(wire))
    assert decoded == msg


@given(messages)
def test_size_estimate_bounds_the_encoding(msg: Message) -> None:
    # The estimate feeds byte limits; it must not undercount by more than the varint slack of
    # a few fields, or a batch could exceed what the receiver accepts.
    encoded = len(encode_message(msg).SerializeToString())
    assert encoded <= message_size(msg) + 11 * 10 + 16 * len(msg.entries)


def test_empty_snapshot_stays_present() -> None:
    msg = Message(type=MessageType.SNAP, to=2, from_=1, snapshot=Snapshot())
    decoded = decode_message(pb.Message.FromString(encode_message(msg).SerializeToString()))
    assert decoded.snapshot == Snapshot()


def test_unknown_message_type_is_refused() -> None:
    wire = pb.Message(type=pb.MsgStorageAppend, to_id=1)
    with pytest.raises(CodecError, match="unknown raft message type"):
        decode_message(wire)


def test_conf_change_v2_entry_is_refused() -> None:
    wire = pb.Message(type=pb.MsgApp, entries=[pb.Entry(Type=pb.EntryConfChangeV2, Index=1)])
    with pytest.raises(CodecError, match="unknown raft entry type"):
        decode_message(wire)


def test_malformed_conf_state_is_refused() -> None:
    wire = pb.Message(type=pb.MsgSnap)
    wire.snapshot.metadata.conf_state.voters.extend([3, 1])
    with pytest.raises(CodecError, match="malformed conf state"):
        decode_message(wire)
    joint = pb.Message(type=pb.MsgSnap)
    joint.snapshot.metadata.conf_state.voters_outgoing.append(1)
    with pytest.raises(CodecError, match="joint"):
        decode_message(joint)

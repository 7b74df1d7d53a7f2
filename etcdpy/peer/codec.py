"""Conversion between `etcdpy.raft` value types and the peerpb wire messages.

This is the only module that knows both sides, so a change to either shows up here and in
its round-trip tests. Decoding is strict: a message type or entry type the core does not know
raises `CodecError` (the caller drops the message) rather than being guessed at, because a
misread Raft message is worse than a lost one (Raft retransmits lost ones).
"""

from __future__ import annotations

from etcdpy._pb.peerpb import peer_pb2 as pb
from etcdpy.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

# Rough per-message protobuf overhead (type, ids, term, index, commit varints), used only for
# byte-based batching limits; the exact size is not worth an extra serialisation.
_MESSAGE_OVERHEAD = 48
_ENTRY_OVERHEAD = 24


class CodecError(ValueError):
    """A wire message that cannot be represented as an `etcdpy.raft` value."""


def message_size(msg: Message) -> int:
    """Estimated encoded size of `msg`, for queue and batch byte limits."""
    size = _MESSAGE_OVERHEAD + len(msg.context)
    for entry in msg.entries:
        size += _ENTRY_OVERHEAD + len(entry.data)
    if msg.snapshot is not None:
        size += len(msg.snapshot.data) + _MESSAGE_OVERHEAD
    return size


def fill_message(out: pb.Message, msg: Message) -> pb.Message:
    """Write `msg` into the (fresh) protobuf `out`, e.g. `batch.messages.add()`; returns it."""
    out.type = int(msg.type)  # type: ignore[assignment]
    out.to_id = msg.to
    out.from_id = msg.from_
    out.term = msg.term
    out.logTerm = msg.log_term
    out.index = msg.index
    out.commit = msg.commit
    out.reject = msg.reject
    out.rejectHint = msg.reject_hint
    out.context = msg.context
    if msg.entries:
        add = out.entries.add
        for entry in msg.entries:
            add(Term=entry.term, Index=entry.index, Type=int(entry.type), Data=entry.data)
    if msg.snapshot is not None:
        _fill_snapshot(out.snapshot, msg.snapshot)
    return out


def encode_message(msg: Message) -> pb.Message:
    return fill_message(pb.Message(), msg)


def _fill_snapshot(out: pb.Snapshot, snap: Snapshot) -> None:
    out.data = snap.data
    meta = out.metadata
    meta.index = snap.metadata.index
    meta.term = snap.metadata.term
    meta.conf_state.voters.extend(snap.metadata.conf_state.voters)
    meta.conf_state.learners.extend(snap.metadata.conf_state.learners)
    # Guarantee that an empty snapshot still decodes as present (not None): proto3 only marks
    # a sub-message present once a field inside it was touched.
    out.SetInParent()


def decode_message(m: pb.Message) -> Message:
    try:
        mtype = MessageType(m.type)
    except ValueError:
        raise CodecError(f"unknown raft message type {m.type}") from None
    if m.vote or m.responses:
        # Fields of raftpb that the core has no place for; silently dropping them would
        # change the message's meaning.
        raise CodecError("raft message carries vote/responses, which etcdpy.raft does not use")
    entries = tuple(_decode_entry(e) for e in m.entries)
    snapshot = _decode_snapshot(m.snapshot) if m.HasField("snapshot") else None
    return Message(
        type=mtype,
        to=m.to_id,
        from_=m.from_id,
        term=m.term,
        log_term=m.logTerm,
        index=m.index,
        entries=entries,
        commit=m.commit,
        snapshot=snapshot,
        reject=m.reject,
        reject_hint=m.rejectHint,
        context=m.context,
    )


def _decode_entry(e: pb.Entry) -> Entry:
    try:
        etype = EntryType(e.Type)
    except ValueError:
        raise CodecError(f"unknown raft entry type {e.Type}") from None
    return Entry(term=e.Term, index=e.Index, type=etype, data=e.Data)


def _decode_snapshot(s: pb.Snapshot) -> Snapshot:
    cs = s.metadata.conf_state
    if cs.voters_outgoing or cs.learners_next or cs.auto_leave:
        raise CodecError("joint configurations are not supported by etcdpy.raft")
    voters, learners = tuple(cs.voters), tuple(cs.learners)
    # ConfState's invariant (sorted, unique, disjoint) is only asserted there; a peer's bytes
    # must be checked for real.
    if (
        list(voters) != sorted(set(voters))
        or list(learners) != sorted(set(learners))
        or set(voters) & set(learners)
    ):
        raise CodecError(f"malformed conf state: voters {voters} learners {learners}")
    conf_state = ConfState(voters=voters, learners=learners)
    meta = SnapshotMetadata(
        conf_state=conf_state, index=s.metadata.index, term=s.metadata.term
    )
    return Snapshot(data=s.data, metadata=meta)

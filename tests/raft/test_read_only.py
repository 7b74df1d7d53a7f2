"""The ReadIndex queue: acknowledgements and in-order release."""

from __future__ import annotations

from etcdpy.raft import Message, MessageType
from etcdpy.raft.read_only import MAX_PENDING_READS, ReadOnly


def req(ctx: bytes) -> Message:
    return Message(type=MessageType.READ_INDEX, context=ctx)


def test_ack_release_in_order() -> None:
    ro = ReadOnly(lease_based=False)
    assert ro.add_request(5, req(b"a"))
    assert ro.add_request(6, req(b"b"))
    assert ro.add_request(7, req(b"c"))
    assert not ro.add_request(8, req(b"b"))  # duplicate context
    assert ro.last_pending_request_ctx() == b"c"
    assert ro.recv_ack(2, b"b") == {2: True}
    assert ro.recv_ack(3, b"b") == {2: True, 3: True}
    assert ro.recv_ack(3, b"zzz") is None
    done = ro.advance(b"b")
    # b and everything queued before it are released, c stays.
    assert [(s.req.context, s.index) for s in done] == [(b"a", 5), (b"b", 6)]
    assert ro.queue == [b"c"] and set(ro.pending) == {b"c"}
    assert ro.advance(b"b") == []


def test_queue_is_bounded() -> None:
    ro = ReadOnly(lease_based=False)
    for i in range(MAX_PENDING_READS):
        assert ro.add_request(1, req(str(i).encode()))
    assert not ro.add_request(1, req(b"one too many"))

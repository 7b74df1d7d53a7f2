"""Small pieces of the transport: backoff policy, snapshot reassembly checks, the sender's
message accounting."""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from etcdpy._pb.peerpb import peer_pb2 as pb
from etcdpy.peer.backoff import Backoff, BackoffPolicy
from etcdpy.peer.options import TransportOptions
from etcdpy.peer.sender import PeerSender, grpc_target
from etcdpy.peer.snapshot import CHUNK_BYTES, SnapshotPayload, SnapshotReader, SnapshotWriter

from .conftest import RecordingSink, app


def test_backoff_grows_is_capped_jittered_and_resets() -> None:
    policy = BackoffPolicy(initial_s=0.1, multiplier=2.0, max_s=1.0)
    b = Backoff(policy, random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    nominal = [min(1.0, 0.1 * 2**i) for i in range(10)]
    for d, n in zip(delays, nominal, strict=True):
        assert n / 2 <= d <= n
    assert len(set(delays)) == len(delays), "jitter makes every delay different"
    b.reset()
    assert b.next_delay() <= 0.1


def test_reader_chunks_and_digest() -> None:
    data = bytes(range(256)) * (CHUNK_BYTES // 128 + 3)
    reader = SnapshotReader(SnapshotPayload.from_bytes(data))
    chunks = []
    while chunk := reader.read_chunk():
        chunks.append(chunk)
    assert b"".join(chunks) == data
    assert all(len(c) == CHUNK_BYTES for c in chunks[:-1])
    assert reader.digest() == hashlib.sha256(data).digest()


def test_reader_refuses_a_short_source() -> None:
    reader = SnapshotReader(SnapshotPayload(10, lambda: io.BytesIO(b"short")))
    with pytest.raises(OSError, match="ended at 5 of 10"):
        reader.read_chunk()


def test_writer_checks_size_and_checksum(tmp_path: Path) -> None:
    w = SnapshotWriter(str(tmp_path), 4)
    with pytest.raises(ValueError, match="larger than announced"):
        w.write(b"12345")
    w.discard()
    w = SnapshotWriter(str(tmp_path), 4)
    w.write(b"123")
    with pytest.raises(ValueError, match="cut off"):
        w.finish(hashlib.sha256(b"123").digest())
    w.discard()
    w = SnapshotWriter(str(tmp_path), 4)
    w.write(b"1234")
    with pytest.raises(ValueError, match="checksum"):
        w.finish(hashlib.sha256(b"4321").digest())
    w.discard()
    assert list(tmp_path.iterdir()) == []
    w = SnapshotWriter(str(tmp_path), 4)
    w.write(b"1234")
    path = w.finish(hashlib.sha256(b"1234").digest())
    assert Path(path).read_bytes() == b"1234"


def test_grpc_target_from_peer_urls() -> None:
    assert grpc_target("http://127.0.0.1:2380") == "127.0.0.1:2380"
    assert grpc_target("http://[::1]:12380") == "[::1]:12380"
    assert grpc_target("http://node1") == "node1:80"


def test_every_enqueued_message_is_counted_sent_or_dropped() -> None:
    """A batch taken from the queue whose write fails (the stream broke under it) was never
    sent: it counts as dropped, like the queue behind it, so sent + dropped = enqueued."""
    async def main() -> None:
        opts = TransportOptions(queue_messages=10, batch_bytes=1)  # one message per batch
        sender = PeerSender(2, ["http://127.0.0.1:1"], 1, lambda: 7, RecordingSink(), opts,
                            random.Random(1))
        written: list[int] = []

        async def write(batch: pb.MessageBatch) -> None:
            if len(written) == 2:
                raise ConnectionError("stream broke")
            written.append(len(batch.messages))

        async def no_acks() -> AsyncIterator[int]:
            await asyncio.Event().wait()
            yield 0  # pragma: no cover - never reached

        for k in range(12):  # ten queued, two refused
            sender.enqueue(app(1, 2, k))
        assert (sender.queued(), sender.dropped) == (10, 2)
        with pytest.raises(ConnectionError):
            await sender._pump(write, no_acks())
        assert written == [1, 1]
        assert sender.sent_messages == 2
        assert sender.dropped == 3, "the refused two and the batch whose write failed"
        sender._drop_queue()  # what the stream's end does with the rest
        assert sender.sent_messages + sender.dropped == 12

    asyncio.run(main())

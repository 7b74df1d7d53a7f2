"""Snapshot streaming: chunked, checksummed, reassembled into a file, reported to Raft."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from etcdpy.peer.snapshot import CHUNK_BYTES, SnapshotPayload
from etcdpy.raft import ConfState, Message, MessageType, Snapshot, SnapshotMetadata

from .conftest import RecordingSink, app, free_port, make_transport, url_of, wait_until

pytestmark = pytest.mark.timeout(180)


def snap_msg(index: int, data: bytes = b"") -> Message:
    meta = SnapshotMetadata(conf_state=ConfState(voters=(1, 2)), index=index, term=3)
    return Message(type=MessageType.SNAP, to=2, from_=1, term=3,
                   snapshot=Snapshot(data=data, metadata=meta))


class CountingReader(io.RawIOBase):
    """A file wrapper that records the size of every read the sender makes."""

    def __init__(self, path: str, reads: list[int]) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._reads = reads

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._reads.append(len(data))
        return data

    def close(self) -> None:
        self._f.close()
        super().close()


def test_50_mib_snapshot_arrives_intact_in_chunks(tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    src = tmp_path / "state.db"
    with open(src, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(1024 * 1024))
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    reads: list[int] = []

    def opener() -> BinaryIO:
        return CountingReader(str(src), reads)  # type: ignore[return-value]

    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        s1.payloads[7] = SnapshotPayload(size, opener)
        t1 = make_transport(1, s1, str(tmp_path))
        t2 = make_transport(2, s2, str(tmp_path))
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [url_of(t2)])
            msg = snap_msg(7, b"raft-level data travels in the payload")
            t1.send([msg])
            # Ordinary messages keep flowing while the snapshot streams on its own call.
            for k in range(50):
                t1.send([app(1, 2, k)])
                await asyncio.sleep(0.005)
            await wait_until(lambda: bool(s1.snapshot_reports), "snapshot report", 120)
            assert s1.snapshot_reports == [(2, False)]
            assert len(s2.received_snapshots) == 1
            got_msg, path = s2.received_snapshots[0]
            assert got_msg.snapshot is not None
            assert got_msg.snapshot.metadata == msg.snapshot.metadata  # type: ignore[union-attr]
            assert got_msg.snapshot.data == b"" and got_msg.term == 3 and got_msg.from_ == 1
            assert os.path.getsize(path) == size
            assert await asyncio.to_thread(lambda: hashlib.sha256(Path(path).read_bytes())
                                           .hexdigest()) == want
            await wait_until(lambda: len(s2.processed) == 50, "messages beside the snapshot")
        finally:
            await t1.stop()
            await t2.stop()
        assert sum(reads) == size
        assert max(reads) <= CHUNK_BYTES and len(reads) >= size // CHUNK_BYTES

    asyncio.run(main())


def test_short_payload_fails_and_leaves_no_file(tmp_path: Path) -> None:
    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        # Announces 3 MiB but holds 2: the sender must fail it, the receiver must not install.
        s1.payloads[9] = SnapshotPayload(3 * CHUNK_BYTES, lambda: io.BytesIO(b"z" * 2 * CHUNK_BYTES))
        t1 = make_transport(1, s1, str(tmp_path))
        t2 = make_transport(2, s2, str(tmp_path))
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [url_of(t2)])
            t1.send([snap_msg(9)])
            await wait_until(lambda: bool(s1.snapshot_reports), "snapshot report")
            assert s1.snapshot_reports == [(2, True)]
            assert s2.received_snapshots == []
            snap_dir = tmp_path / "snap-2"
            await wait_until(lambda: not snap_dir.exists() or not any(snap_dir.iterdir()),
                             "the partial file to be removed")
        finally:
            await t1.stop()
            await t2.stop()

    asyncio.run(main())


def test_snapshot_to_a_dead_peer_is_reported_failed(tmp_path: Path) -> None:
    async def main() -> None:
        s1 = RecordingSink()
        s1.payloads[4] = SnapshotPayload.from_bytes(b"abc")
        t1 = make_transport(1, s1, str(tmp_path))
        try:
            await t1.start()
            t1.add_peer(2, [f"http://127.0.0.1:{free_port()}"])
            t1.send([snap_msg(4)])
            await wait_until(lambda: bool(s1.snapshot_reports), "snapshot report")
            assert s1.snapshot_reports == [(2, True)]
        finally:
            await t1.stop()

    asyncio.run(main())


def test_small_snapshot_from_bytes_round_trips(tmp_path: Path) -> None:
    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        s1.payloads[2] = SnapshotPayload.from_bytes(b"")  # empty payloads are legal too
        s1.payloads[3] = SnapshotPayload.from_bytes(b"q" * (CHUNK_BYTES + 1))
        t1 = make_transport(1, s1, str(tmp_path))
        t2 = make_transport(2, s2, str(tmp_path))
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [url_of(t2)])
            t1.send([snap_msg(2)])
            await wait_until(lambda: len(s1.snapshot_reports) == 1, "first report")
            t1.send([snap_msg(3)])
            await wait_until(lambda: len(s1.snapshot_reports) == 2, "second report")
            assert s1.snapshot_reports == [(2, False), (2, False)]
            sizes = [os.path.getsize(p) for _, p in s2.received_snapshots]
            assert sizes == [0, CHUNK_BYTES + 1]
            assert Path(s2.received_snapshots[1][1]).read_bytes() == b"q" * (CHUNK_BYTES + 1)
        finally:
            await t1.stop()
            await t2.stop()

    asyncio.run(main())

"""Raft message streams of our own (etcdpy.peer.stream) on loopback: which stream a sender
ends up on, and what the receiver does with requests and frames that are not what it expects."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from etcdpy._pb.peerpb import peer_pb2
from etcdpy.peer.codec import fill_message
from etcdpy.peer.options import MD_CLUSTER_ID, MD_FROM, MD_TO, TransportOptions
from etcdpy.peer.sender import LinkState
from etcdpy.peer.stream import MAX_FRAME, PATH, PROTOCOL, frame
from etcdpy.peer.transport import GrpcTransport

from .conftest import CLUSTER, RecordingSink, app, make_transport, url_of, wait_until

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def _two_members(tmp_path: Path, receiver_options: TransportOptions | None = None
                       ) -> AsyncIterator[tuple[GrpcTransport, RecordingSink, GrpcTransport,
                                                RecordingSink]]:
    """Member 1 (a sender) and member 2 (a receiver) on loopback, both started."""
    s1, s2 = RecordingSink(), RecordingSink()
    t1 = make_transport(1, s1, str(tmp_path))
    t2 = make_transport(2, s2, str(tmp_path), options=receiver_options)
    try:
        await t1.start()
        await t2.start()
        yield t1, s1, t2, s2
    finally:
        await t1.stop()
        await t2.stop()


async def _exchange(t1: GrpcTransport, t2: GrpcTransport, sink2: RecordingSink,
                    count: int) -> None:
    t1.add_peer(2, [url_of(t2)])
    t1.send([app(1, 2, k) for k in range(count)])
    await wait_until(lambda: len(sink2.processed) == count, "delivery")
    assert [m.index for m in sink2.processed] == list(range(count))


@pytest.mark.parametrize("receiver, kind", [
    ("offers raw streams", "raw"),
    ("gRPC-only port", "grpc"),
    ("answers 404", "grpc"),  # a member from before these streams: the path is unknown there
])
def test_the_sender_uses_the_stream_the_peer_offers(tmp_path: Path, receiver: str,
                                                    kind: str) -> None:
    async def main() -> None:
        options = TransportOptions(shared_port=False) if receiver == "gRPC-only port" else None
        async with _two_members(tmp_path, options) as (t1, s1, t2, s2):
            if receiver == "answers 404":
                t2._streams = None
            await _exchange(t1, t2, s2, 50)
            assert t1.stream_kind(2) == kind
            assert 2 not in s1.unreachable, "falling back is not a failure"
    asyncio.run(main())


async def _request(port: int, headers: dict[str, str]) -> tuple[bytes, asyncio.StreamReader,
                                                                asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {PATH} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    writer.write("\r\n".join(lines).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return head, reader, writer


UPGRADE = {"Connection": "Upgrade", "Upgrade": PROTOCOL, MD_CLUSTER_ID: f"{CLUSTER:x}",
           MD_FROM: "1", MD_TO: "2"}


def _batch(k: int) -> bytes:
    out = peer_pb2.MessageBatch()
    if k == 0:
        out.cluster_id, out.from_id, out.to_id, out.ack_every = CLUSTER, 1, 2, 1
    fill_message(out.messages.add(), app(1, 2, k))
    return out.SerializeToString()


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 10) == b""


@pytest.mark.parametrize("headers, status", [
    ({}, b"400"),  # no upgrade asked for
    ({**UPGRADE, "Upgrade": "h2c"}, b"400"),  # another protocol
    ({**UPGRADE, MD_CLUSTER_ID: "abc"}, b"412"),  # another cluster
    ({**UPGRADE, MD_TO: "7"}, b"412"),  # meant for another member
    ({**UPGRADE, MD_FROM: "zz"}, b"410"),  # no sender it could name: refused as removed
])
def test_requests_that_cannot_be_admitted_are_answered_with_etcds_status(
        tmp_path: Path, headers: dict[str, str], status: bytes) -> None:
    async def main() -> None:
        s2 = RecordingSink()
        t2 = make_transport(2, s2, str(tmp_path))
        try:
            await t2.start()
            head, _reader, writer = await _request(t2.listen_ports()[0], headers)
            assert head.split(b" ")[1] == status, head
            writer.close()
            head, _reader, writer = await _request(t2.listen_ports()[0], UPGRADE)
            assert head.startswith(b"HTTP/1.1 101 "), "the port still serves streams"
            writer.close()
        finally:
            await t2.stop()
    asyncio.run(main())


@pytest.mark.parametrize("bad", ["oversized", "undecodable", "cut"])
def test_a_broken_stream_is_closed_and_the_member_serves_on(tmp_path: Path, bad: str) -> None:
    async def main() -> None:
        async with _two_members(tmp_path) as (t1, _s1, t2, s2):
            port = t2.listen_ports()[0]
            head, reader, writer = await _request(port, UPGRADE)
            assert head.startswith(b"HTTP/1.1 101 ") and f"{CLUSTER:x}".encode() in head
            writer.write(frame(_batch(0)))  # one good batch first: it is delivered and acked
            ack = await asyncio.wait_for(reader.readexactly(4), 10)
            ack_body = await reader.readexactly(struct.unpack(">I", ack)[0])
            assert peer_pb2.StreamAck.FromString(ack_body).batches == 1
            if bad == "oversized":
                writer.write(struct.pack(">I", MAX_FRAME + 1))
            elif bad == "undecodable":
                writer.write(frame(b"\xff\xff\xff\xff"))
            else:
                writer.write(struct.pack(">I", 100) + b"x" * 10)
                writer.write_eof()
            assert await _closed_by_server(reader)
            writer.close()
            assert [m.index for m in s2.processed] == [0]
            t1.add_peer(2, [url_of(t2)])  # a real sender still gets through
            t1.send([app(1, 2, 5)])
            await wait_until(lambda: [m.index for m in s2.processed] == [0, 5], "delivery")
    asyncio.run(main())


def test_a_sender_removed_while_streaming_learns_it_at_its_next_attempt(tmp_path: Path) -> None:
    async def main() -> None:
        async with _two_members(tmp_path) as (t1, s1, t2, s2):
            await _exchange(t1, t2, s2, 3)
            assert t1.link_state(2) is LinkState.ACTIVE and t1.stream_kind(2) == "raw"
            s2.removed.add(1)
            t1.send([app(1, 2, 3)])
            await wait_until(lambda: 2 in s1.removed_by, "removal reported to the sender")
            assert [m.index for m in s2.processed] == [0, 1, 2]
    asyncio.run(main())

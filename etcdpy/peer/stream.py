"""Raft message streams without gRPC: length-prefixed frames on an upgraded HTTP/1.1
connection to the peer port.

A gRPC stream costs each message a trip through the shared port's relay, the gRPC core's
threads and a wake-up of the receiver's event loop by gRPC's poller, on both members; a
3-member put waits for two such trips (MsgApp out, MsgAppResp back). Here the sender's event
loop writes a batch straight to the TCP socket and the receiver's loop reads it straight off,
so a trip is one socket write and one read.

The exchange, in the words of etcd's rafthttp (which streams on HTTP/1.1 too):

    GET /etcdpy/raft/stream HTTP/1.1          HTTP/1.1 101 Switching Protocols
    Connection: Upgrade                       Connection: Upgrade
    Upgrade: etcdpy-raft-stream/1             Upgrade: etcdpy-raft-stream/1
    X-Etcd-Cluster-Id: <hex>                  X-Etcd-Cluster-Id: <the receiver's, hex>
    X-Server-From: <hex>  X-Raft-To: <hex>
    X-Peerurls: <the sender's peer URLs>

then `MessageBatch` frames one way and `StreamAck` frames the other, each a 4-byte big-endian
length and the message, with the same flow control as the gRPC stream (`sender.py`). A refusal
is an ordinary answer: 412 (another cluster, another member), 410 (a removed sender), like
etcd's. Anything else (a member that predates these streams answers 404, a gRPC-only port does
not speak HTTP/1.1) means the peer does not offer them, and the sender uses the gRPC stream.

Dead peers: TCP keep-alive probes an idle connection and TCP_USER_TIMEOUT bounds how long sent
bytes may go unacknowledged, so a vanished peer ends the stream within about the time gRPC's
keep-alive pings take (`TransportOptions.keepalive_*`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import grpc
from google.protobuf.message import DecodeError

from etcdpy import logutil
from etcdpy._pb.peerpb import peer_pb2 as pb
from etcdpy.netshare import HttpRequest, HttpResponse

from .options import MAX_GRPC_MESSAGE, MD_CLUSTER_ID, MD_FROM, MD_PEER_URLS, MD_TO
from .service import PeerGate, Refusal, StreamReceiver, parse_hex

log = logutil.get("peer")

PATH = "/etcdpy/raft/stream"
PROTOCOL = "etcdpy-raft-stream/1"
_LENGTH = struct.Struct(">I")
MAX_FRAME = MAX_GRPC_MESSAGE  # a batch holds at most one message over batch_bytes
MAX_ANSWER_HEAD = 16 * 1024  # the receiver's answer before the frames start
_GONE = 410
_PRECONDITION_FAILED = 412


class RemovedByPeerError(ConnectionError):
    """The peer refused our stream because we were removed from the cluster."""


class NotOffered(ConnectionError):
    """The peer does not serve these streams (an older member, a gRPC-only port)."""


def frame(payload: bytes) -> bytes:
    assert len(payload) <= MAX_FRAME
    return _LENGTH.pack(len(payload)) + payload


class FrameReader:
    """Frames off a stream; `pending` holds bytes read before the frames were looked for."""

    def __init__(self, reader: asyncio.StreamReader, pending: bytes = b"") -> None:
        self._reader = reader
        self._pending = pending

    async def _exactly(self, n: int) -> bytes:
        if self._pending:
            have, self._pending = self._pending[:n], self._pending[n:]
            return have + (await self._reader.readexactly(n - len(have)) if len(have) < n
                           else b"")
        return await self._reader.readexactly(n)

    async def next(self) -> bytes | None:
        """The next frame's payload; None when the stream ended between frames. Raises
        ConnectionError for a stream cut inside a frame or a frame over MAX_FRAME."""
        try:
            (length,) = _LENGTH.unpack(await self._exactly(_LENGTH.size))
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise ConnectionError("stream ended inside a frame header") from None
            return None
        if length > MAX_FRAME:
            raise ConnectionError(f"frame of {length} bytes is over the limit")
        try:
            return await self._exactly(length)
        except asyncio.IncompleteReadError:
            raise ConnectionError("stream ended inside a frame") from None


def keep_alive(sock: socket.socket | None, idle_s: float, timeout_s: float) -> None:
    """Make a dead peer end the connection (see the module docstring)."""
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):  # not every platform has them all
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(idle_s)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(timeout_s)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                        int((idle_s + timeout_s) * 1000))


# --- the receiver -------------------------------------------------------------------------


class StreamServer:
    """Answers the upgrade requests on the peer port's HTTP side."""

    def __init__(self, gate: PeerGate, keepalive_s: tuple[float, float]) -> None:
        self._gate = gate
        self._keepalive_s = keepalive_s

    def answer(self, req: HttpRequest) -> HttpResponse:
        if req.method != "GET" or req.header("upgrade").lower() != PROTOCOL:
            return HttpResponse.text(400, f"this path serves {PROTOCOL} upgrades only\n")
        try:
            from_id = self._gate.admit(parse_hex(req.header(MD_CLUSTER_ID)),
                                       parse_hex(req.header(MD_FROM)),
                                       parse_hex(req.header(MD_TO)), req.header(MD_PEER_URLS))
        except Refusal as refusal:
            status = _GONE if refusal.code == grpc.StatusCode.NOT_FOUND else _PRECONDITION_FAILED
            return HttpResponse.text(status, refusal.message + "\n")

        async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          pending: bytes) -> None:
            keep_alive(writer.get_extra_info("socket"), *self._keepalive_s)
            await self._receive(from_id, FrameReader(reader, pending), writer)

        return HttpResponse(101, (("Upgrade", PROTOCOL), ("Connection", "Upgrade"),
                                  (MD_CLUSTER_ID, f"{self._gate.cluster_id():x}")),
                            upgrade=receive)

    async def _receive(self, from_id: int, frames: FrameReader,
                       writer: asyncio.StreamWriter) -> None:
        receiver = StreamReceiver(self._gate, from_id)
        try:
            while (payload := await frames.next()) is not None:
                batch = pb.MessageBatch.FromString(payload)
                if receiver.take(batch):
                    writer.write(frame(pb.StreamAck(batches=receiver.batches)
                                       .SerializeToString()))
                    await writer.drain()
        except Refusal as refusal:
            # Ending the stream is the answer: the sender's next attempt is refused at the
            # door with the status that says why.
            log.warning("closed a peer stream", **{"remote-peer-id": f"{from_id:x}",
                                                   "reason": refusal.message})
        except (DecodeError, ConnectionError) as exc:
            log.warning("closed a broken peer stream", **{"remote-peer-id": f"{from_id:x}",
                                                          "error": str(exc)})


# --- the sender ---------------------------------------------------------------------------


class StreamClient:
    """One stream to a peer: `open` it, then `write` batches and read `acks`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 pending: bytes) -> None:
        self._writer = writer
        self._frames = FrameReader(reader, pending)

    @classmethod
    async def open(cls, url: str, headers: tuple[tuple[str, str], ...], cluster_id: int,
                   keepalive_s: tuple[float, float]) -> StreamClient:
        """Connect and upgrade; raises NotOffered, RemovedByPeerError or ConnectionError."""
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_ANSWER_HEAD)
        try:
            keep_alive(writer.get_extra_info("socket"), *keepalive_s)
            netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            lines = [f"GET {PATH} HTTP/1.1", f"Host: {netloc}", "Connection: Upgrade",
                     f"Upgrade: {PROTOCOL}", *(f"{k}: {v}" for k, v in headers), "", ""]
            writer.write("\r\n".join(lines).encode("latin-1"))
            status, answer_headers, rest = await _read_answer(reader)
            if status == 101 and answer_headers.get("upgrade", "").lower() == PROTOCOL:
                remote = answer_headers.get(MD_CLUSTER_ID.lower())
                if remote != f"{cluster_id:x}":
                    raise ConnectionError(f"peer answered with cluster ID {remote!r}")
                return cls(reader, writer, rest)
            text = rest.decode("utf-8", "replace").strip()[:200]
            if status == _GONE:
                raise RemovedByPeerError(f"{status}: {text}")
            if status == _PRECONDITION_FAILED:
                raise ConnectionError(f"{status}: {text}")
            raise NotOffered(f"answered {status}")
        except BaseException:
            writer.close()
            raise

    async def write(self, batch: pb.MessageBatch) -> None:
        self._writer.write(frame(batch.SerializeToString()))
        await self._writer.drain()  # backpressure: a slow peer slows its sender

    async def acks(self) -> AsyncIterator[int]:
        """The peer's cumulative acknowledgements until it ends the stream (which raises:
        a receiver never ends one on purpose while its sender writes)."""
        while (payload := await self._frames.next()) is not None:
            try:
                yield pb.StreamAck.FromString(payload).batches
            except DecodeError:
                raise ConnectionError("undecodable acknowledgement") from None
        raise ConnectionError("stream closed by the peer")

    async def close(self) -> None:
        # Abort rather than close: a close waits to flush what is buffered, and a peer that
        # stopped reading would hold the sender's next attempt back until TCP gives up.
        self._writer.transport.abort()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """The status, headers (lower-case names) and whatever followed the head: the frames'
    first bytes after a 101, else the start of the body. NotOffered if it is not HTTP/1.1."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise NotOffered("answer head too long") from None
    except asyncio.IncompleteReadError as exc:
        raise NotOffered(f"no HTTP answer ({len(exc.partial)} bytes)") from None
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest.partition(" ")[0]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise NotOffered(f"not an HTTP/1.1 answer: {status_line[:60]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    status = int(code)
    body = b""
    if status != 101:  # a short text says why; read what is already there, no more
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            body = await asyncio.wait_for(reader.read(512), 0.5)
    return status, headers, body

"""The receiving side: who may send to this member (`PeerGate`), what one incoming message
stream does with its batches (`StreamReceiver`), and the `RaftPeer` gRPC servicer built on
them. `stream.py` serves the same streams without gRPC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from urllib.parse import urlsplit

import grpc

from etcdpy import logutil
from etcdpy._pb.peerpb import peer_pb2 as pb
from etcdpy._pb.peerpb import peer_pb2_grpc as pb_grpc
from etcdpy.raft import MessageType

from .codec import CodecError, decode_message
from .options import MD_CLUSTER_ID, MD_FROM, MD_PEER_URLS, MD_TO, REMOVED_MESSAGE
from .sink import MessageSink
from .snapshot import SnapshotWriter

log = logutil.get("peer")


def _hex(value: int) -> str:
    return f"{value:x}"


MAX_ADVERTISED_URLS = 16


def advertised_urls(text: str | bytes | None) -> list[str]:
    """The sender's peer URLs from its MD_PEER_URLS header; anything that is not an http(s)
    URL with a host and a port is left out (the header is only a hint)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    urls = []
    for url in (text or "").split(",")[:MAX_ADVERTISED_URLS]:
        url = url.strip()
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and bool(parts.port)
        except ValueError:
            ok = False
        if ok:
            urls.append(url)
    return urls


def parse_hex(text: str | bytes | None) -> int | None:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


class Refusal(Exception):
    """Why a peer's stream is not (or no longer) accepted, as the gRPC status it ends with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PeerGate:
    """Who may send to this member: the admission checks every incoming stream passes."""

    def __init__(
        self,
        local_id: int,
        cluster_id: Callable[[], int],
        sink: MessageSink,
        learn_remote: Callable[[int, Sequence[str]], None] = lambda peer_id, urls: None,
    ) -> None:
        self.local_id = local_id
        self.cluster_id = cluster_id
        self.sink = sink
        self._learn_remote = learn_remote

    def admit(self, cluster_id: int | None, from_id: int | None, to_id: int | None,
              peer_urls: str | bytes | None) -> int:
        """The sender's ID, or Refusal for a peer of another cluster, a stream meant for
        another member or a removed sender (each logged as etcd logs it)."""
        local_cluster = self.cluster_id()
        if cluster_id != local_cluster:
            log.warning(
                "request cluster ID mismatch",
                **{
                    "local-member-id": _hex(self.local_id),
                    "local-member-cluster-id": _hex(local_cluster),
                    "remote-peer-id": _hex(from_id or 0),
                    "remote-peer-cluster-id": _hex(cluster_id or 0),
                },
            )
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "cluster ID mismatch")
        if to_id != self.local_id:
            log.warning(
                "ignored peer request meant for another member",
                **{"local-member-id": _hex(self.local_id), "to": _hex(to_id or 0)},
            )
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "to member ID mismatch")
        if from_id is None or self.sink.is_removed(from_id):
            log.warning("rejected stream from removed member", **{"remote-peer-id": _hex(
                from_id or 0)})
            raise Refusal(grpc.StatusCode.NOT_FOUND, REMOVED_MESSAGE)
        # A sender we may not know yet (it joined while we were behind): learn where it is.
        urls = advertised_urls(peer_urls)
        if urls:
            self._learn_remote(from_id, urls)
        return from_id


class StreamReceiver:
    """One admitted message stream: hands each batch's messages to the node and says when
    to acknowledge. Invariant: `batches` counts the batches taken; an ack always carries it."""

    def __init__(self, gate: PeerGate, from_id: int) -> None:
        self._gate = gate
        self._from_id = from_id
        self.batches = 0
        self._ack_every = 1  # until the first batch says otherwise (a sender that never does)

    def take(self, batch: pb.MessageBatch) -> bool:
        """Deliver `batch`; True when an acknowledgement of `batches` is due now. Raises
        Refusal when the sender was removed meanwhile or the batch contradicts the stream."""
        gate, sink = self._gate, self._gate.sink
        if sink.is_removed(self._from_id):
            raise Refusal(grpc.StatusCode.NOT_FOUND, REMOVED_MESSAGE)
        if batch.cluster_id and (batch.cluster_id, batch.from_id, batch.to_id) != (
            gate.cluster_id(), self._from_id, gate.local_id
        ):
            # The first batch repeats the headers; they must agree with them.
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "batch header mismatch")
        if self.batches == 0 and batch.ack_every:
            self._ack_every = batch.ack_every
        for wire in batch.messages:
            try:
                msg = decode_message(wire)
            except CodecError as exc:
                log.warning("dropped undecodable peer message", error=str(exc))
                continue
            if msg.type == MessageType.SNAP:
                # Snapshots travel via SendSnapshot with their data; one here has none.
                log.warning("dropped MsgSnap received on the message stream")
                continue
            try:
                sink.process(msg)
            except Exception:  # the node's bug must not end the peer's stream
                log.error("processing a peer message failed", exc_info=True)
        self.batches += 1
        return self.batches % self._ack_every == 0


class RaftPeerServicer(pb_grpc.RaftPeerServicer):
    def __init__(self, gate: PeerGate, snapshot_dir: str, max_incoming_snapshots: int) -> None:
        self._gate = gate
        self._snapshot_dir = snapshot_dir
        self._snapshot_slots = asyncio.Semaphore(max_incoming_snapshots)

    async def _check(
        self, context: grpc.aio.ServicerContext, cluster_id: int | None, from_id: int | None,
        to_id: int | None,
    ) -> int:
        metadata = dict(context.invocation_metadata() or ())
        try:
            return self._gate.admit(cluster_id, from_id, to_id, metadata.get(MD_PEER_URLS))
        except Refusal as refusal:
            await context.abort(refusal.code, refusal.message)
            raise AssertionError("abort returns only by raising") from None

    async def Stream(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[pb.MessageBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamAck]:
        md = dict(context.invocation_metadata() or ())
        from_id = await self._check(
            context, parse_hex(md.get(MD_CLUSTER_ID)), parse_hex(md.get(MD_FROM)),
            parse_hex(md.get(MD_TO)),
        )
        # Answer the headers at once: the sender counts the stream as working only then, so a
        # refused peer never looks connected.
        await context.send_initial_metadata(((MD_CLUSTER_ID, _hex(self._gate.cluster_id())),))
        receiver = StreamReceiver(self._gate, from_id)
        async for batch in request_iterator:
            try:
                ack_due = receiver.take(batch)
            except Refusal as refusal:
                await context.abort(refusal.code, refusal.message)
            if ack_due:
                yield pb.StreamAck(batches=receiver.batches)

    async def SendSnapshot(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[pb.SnapshotChunk], context: grpc.aio.ServicerContext
    ) -> pb.SnapshotAck:
        it = aiter(request_iterator)
        first = await anext(it, None)
        if first is None or not first.HasField("header"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "snapshot stream without header")
        assert first is not None
        header = first.header
        from_id = await self._check(context, header.cluster_id, header.from_id, header.to_id)
        try:
            msg = decode_message(header.message)
        except CodecError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if msg.type != MessageType.SNAP or msg.snapshot is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "snapshot header is no MsgSnap")
        if self._snapshot_slots.locked():
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "too many snapshots being received"
            )
        async with self._snapshot_slots:
            log.info(
                "receiving database snapshot",
                **{"remote-snapshot-sender-id": _hex(from_id), "incoming-snapshot-index":
                   msg.snapshot.metadata.index, "incoming-snapshot-size": header.size},
            )
            writer = await asyncio.to_thread(SnapshotWriter, self._snapshot_dir, header.size)
            try:
                chunk: pb.SnapshotChunk | None = first
                sha256 = b""
                while chunk is not None:
                    if chunk.data:
                        await asyncio.to_thread(writer.write, chunk.data)
                    if chunk.sha256:
                        sha256 = chunk.sha256
                    chunk = await anext(it, None)
                path = await asyncio.to_thread(writer.finish, sha256)
            except ValueError as exc:
                await asyncio.to_thread(writer.discard)
                log.warning("refused snapshot", error=str(exc))
                await context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(writer.discard)
                raise
            log.info(
                "received and saved database snapshot",
                **{"remote-snapshot-sender-id": _hex(from_id), "incoming-snapshot-index":
                   msg.snapshot.metadata.index, "incoming-snapshot-size": writer.received},
            )
            self._gate.sink.snapshot_received(msg, path)
            return pb.SnapshotAck(received_bytes=writer.received)

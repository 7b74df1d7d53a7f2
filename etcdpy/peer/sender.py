"""The sending side for one peer: a bounded queue drained by one long-lived stream, of our
own where the peer offers it (`stream.py`), else of gRPC.

Invariants (checked with asserts where they change, the last one by tests/peer/test_units.py):
* `len(queue) <= queue_messages` and `queued_bytes <= queue_bytes`: `enqueue` drops instead
  of growing, so a slow or dead peer costs bounded memory and never blocks the caller.
* batches written - batches acknowledged <= max_inflight_batches on the current stream. The
  receiver acknowledges every `ack_every` batches (`ack_interval`, half the window), so an ack
  is always due before the sender has to wait for one.
* at most one snapshot transfer to this peer at a time.
* every message handed to `enqueue` ends up counted once, in `sent_messages` when its batch's
  write returns or in `dropped` (refused, queued when the stream broke, or in a failed write).
Messages are written in the order they were enqueued; a broken stream drops what was queued
(Raft retransmits) rather than replaying stale messages into the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from enum import IntEnum
from urllib.parse import urlsplit

import grpc

from etcdpy import logutil
from etcdpy._pb.peerpb import peer_pb2 as pb
from etcdpy._pb.peerpb import peer_pb2_grpc as pb_grpc
from etcdpy.raft import Message

from .backoff import Backoff
from .codec import fill_message, message_size
from .options import (
    MAX_GRPC_MESSAGE,
    MD_CLUSTER_ID,
    MD_FROM,
    MD_PEER_URLS,
    MD_TO,
    REMOVED_MESSAGE,
    TransportOptions,
)
from .sink import MessageSink
from .snapshot import SnapshotPayload, SnapshotReader
from .stream import NotOffered, RemovedByPeerError, StreamClient

log = logutil.get("peer")


class LinkState(IntEnum):
    CONNECTING = 0  # a stream is being opened; messages queue
    ACTIVE = 1  # the peer accepted the stream; messages flow
    BROKEN = 2  # waiting out the backoff; messages are dropped


def grpc_target(url: str) -> str:
    """`http://host:port` (etcd's peer URL form) -> gRPC's `host:port`."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def ack_interval(window: int) -> int:
    """`MessageBatch.ack_every` for a sender that waits once `window` batches are
    unacknowledged: half of it (peer.proto says why)."""
    assert window >= 1
    return max(1, window // 2)


def channel_options(opts: TransportOptions) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", int(opts.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(opts.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
        # Our own backoff decides when to retry; each attempt uses a fresh channel.
        ("grpc.enable_retries", 0),
    ]


class PeerSender:
    def __init__(
        self,
        peer_id: int,
        urls: Sequence[str],
        local_id: int,
        cluster_id: Callable[[], int],
        sink: MessageSink,
        opts: TransportOptions,
        rng: random.Random,
        local_urls: Sequence[str] = (),
    ) -> None:
        assert urls, "a peer needs at least one URL"
        self._local_urls = ",".join(local_urls)  # sent as MD_PEER_URLS when known
        self.peer_id = peer_id
        self.urls = tuple(urls)
        self._local_id = local_id
        self._cluster_id = cluster_id
        self._sink = sink
        self._opts = opts
        self._backoff = Backoff(opts.backoff, rng)
        self._queue: deque[tuple[Message, int]] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self.state = LinkState.CONNECTING
        self.active_since: float | None = None  # wall-clock seconds, like etcd's ActiveSince
        self.stream_kind = ""  # "raw" (stream.py) or "grpc" while ACTIVE, else ""
        self.dropped = 0
        self.sent_batches = 0
        self.sent_messages = 0
        self._url_index = 0
        self._task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._ack_every = ack_interval(opts.max_inflight_batches)

    # --- called by the transport on the event loop ---

    def start(self) -> None:
        assert self._task is None
        self._task = asyncio.create_task(self._run(), name=f"peer-stream-{self.peer_id:x}")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._snapshot_task) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._drop_queue()

    def set_urls(self, urls: Sequence[str]) -> None:
        assert urls
        changed = tuple(urls) != self.urls
        self.urls = tuple(urls)
        if changed and self._task is not None:
            # Reconnect to the new address at once instead of at the next failure.
            self._task.cancel()
            self._drop_queue()
            self.state = LinkState.CONNECTING
            self.active_since = None
            self._url_index = 0
            self._task = asyncio.create_task(self._run(), name=f"peer-stream-{self.peer_id:x}")

    def enqueue(self, msg: Message) -> bool:
        """Queue `msg` for the stream; False (and counted) when it was dropped instead."""
        if self.state is LinkState.BROKEN:
            self.dropped += 1
            return False
        size = message_size(msg)
        if (
            len(self._queue) >= self._opts.queue_messages
            or self._queued_bytes + size > self._opts.queue_bytes
        ):
            self.dropped += 1
            if self.dropped % 1000 == 1:  # a log line per thousand, not per message
                log.warning(
                    "dropped internal Raft message since sending buffer is full",
                    **{"remote-peer-id": f"{self.peer_id:x}", "dropped": self.dropped},
                )
            return False
        self._queue.append((msg, size))
        self._queued_bytes += size
        assert len(self._queue) <= self._opts.queue_messages
        self._wake.set()
        return True

    def send_snapshot(self, msg: Message, payload: SnapshotPayload) -> bool:
        if self._snapshot_task is not None and not self._snapshot_task.done():
            self.dropped += 1
            log.warning("dropped MsgSnap: a snapshot to this peer is still being sent",
                        **{"remote-peer-id": f"{self.peer_id:x}"})
            return False
        self._snapshot_task = asyncio.create_task(
            self._send_snapshot(msg, payload), name=f"peer-snapshot-{self.peer_id:x}"
        )
        return True

    def queued(self) -> int:
        return len(self._queue)

    # --- the stream ---

    def _drop_queue(self) -> None:
        self.dropped += len(self._queue)
        self._queue.clear()
        self._queued_bytes = 0

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        md = (
            (MD_CLUSTER_ID, f"{self._cluster_id():x}"),
            (MD_FROM, f"{self._local_id:x}"),
            (MD_TO, f"{self.peer_id:x}"),
        )
        return (*md, (MD_PEER_URLS, self._local_urls)) if self._local_urls else md

    async def _run(self) -> None:
        failures = 0  # consecutive attempts that did not get an active stream
        while True:
            url = self.urls[self._url_index % len(self.urls)]
            self.state = LinkState.CONNECTING
            try:
                await self._session(url)
                error = "stream closed by the peer"
            except asyncio.CancelledError:
                raise
            except RemovedByPeerError as exc:
                error = str(exc)
                self._sink.report_removed_by_peer(self.peer_id)
            except grpc.aio.AioRpcError as exc:
                error = f"{exc.code().name}: {exc.details()}"
                if exc.code() == grpc.StatusCode.NOT_FOUND and exc.details() == REMOVED_MESSAGE:
                    self._sink.report_removed_by_peer(self.peer_id)
            except Exception as exc:  # any failure of one attempt leads to a retry
                error = f"{type(exc).__name__}: {exc}"
            was_active = self.state is LinkState.ACTIVE
            self.state = LinkState.BROKEN
            self.stream_kind = ""
            self.active_since = None
            self._drop_queue()
            self._url_index += 1
            failures = 1 if was_active else failures + 1
            # A peer that stays down is retried every few seconds; say so at the first failure
            # and then now and again, not at every attempt.
            if failures == 1 or failures % 20 == 0:
                log.warning(
                    "lost TCP streaming connection with remote peer" if was_active
                    else "failed to connect to remote peer",
                    **{"remote-peer-id": f"{self.peer_id:x}", "url": url, "error": error,
                       "attempts": failures},
                )
            self._sink.report_unreachable(self.peer_id)
            await asyncio.sleep(self._backoff.next_delay())

    async def _session(self, url: str) -> None:
        if self._opts.raw_streams:
            try:
                client = await asyncio.wait_for(
                    StreamClient.open(url, self._metadata(), self._cluster_id(),
                                      self._opts.keepalive_s),
                    self._opts.connect_timeout_s)
            except NotOffered as exc:  # an older member, a gRPC-only port: gRPC it is
                log.debug("peer offers no raw stream", **{"remote-peer-id": f"{self.peer_id:x}",
                                                          "url": url, "answer": str(exc)})
            else:
                try:
                    self._became_active(url, "raw")
                    await self._pump(client.write, client.acks())
                finally:
                    await client.close()
                return
        await self._grpc_session(url)

    def _became_active(self, url: str, kind: str) -> None:
        self.state = LinkState.ACTIVE
        self.stream_kind = kind
        self.active_since = time.time()
        self._backoff.reset()
        log.info("peer became active", **{"peer-id": f"{self.peer_id:x}", "url": url,
                                          "stream": kind})

    async def _grpc_session(self, url: str) -> None:
        opts = self._opts
        async with grpc.aio.insecure_channel(grpc_target(url), options=channel_options(opts)) as ch:
            call = pb_grpc.RaftPeerStub(ch).Stream(metadata=self._metadata())
            try:
                headers = await asyncio.wait_for(call.initial_metadata(), opts.connect_timeout_s)
                # A refusing peer ends the call with bare headers; an accepting one names its
                # cluster, which must be ours (etcd checks the answer's cluster ID too).
                remote = dict(headers or ()).get(MD_CLUSTER_ID)
                if remote != f"{self._cluster_id():x}":
                    code = await asyncio.wait_for(call.code(), opts.connect_timeout_s)
                    details = await call.details()
                    if code == grpc.StatusCode.NOT_FOUND and details == REMOVED_MESSAGE:
                        raise RemovedByPeerError(f"{code.name}: {details}")
                    raise ConnectionError(
                        f"{code.name}: {details}" if code != grpc.StatusCode.OK
                        else f"peer answered with cluster ID {remote!r}"
                    )
                self._became_active(url, "grpc")
                await self._pump(call.write, (ack.batches async for ack in call))
            finally:
                call.cancel()

    async def _pump(self, write: Callable[[pb.MessageBatch], Awaitable[None]],
                    acks: AsyncIterator[int]) -> None:
        """Write batches while fewer than the window are unacknowledged; returns when the
        peer ends the stream, raises when it fails."""
        acked = 0
        written = 0

        async def read_acks() -> None:
            nonlocal acked
            async for batches in acks:
                assert batches <= written, "peer acknowledged more than was sent"
                acked = batches
                self._wake.set()

        reader = asyncio.create_task(read_acks())
        reader.add_done_callback(lambda _t: self._wake.set())
        first = True
        try:
            while True:
                self._wake.clear()
                if reader.done():
                    reader.result()  # raises the stream's error, if any
                    return
                if self._queue and written - acked < self._opts.max_inflight_batches:
                    batch = self._take_batch(first)
                    first = False
                    # Counted before the write returns: the ack may arrive before it does.
                    written += 1
                    try:
                        await write(batch)
                    except BaseException:
                        # Taken from the queue, never sent: counted like the queue the
                        # broken stream drops, so every message is either sent or dropped.
                        self.dropped += len(batch.messages)
                        raise
                    self.sent_batches += 1
                    self.sent_messages += len(batch.messages)
                    assert written - acked <= self._opts.max_inflight_batches
                    continue
                await self._wake.wait()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    def _take_batch(self, first: bool) -> pb.MessageBatch:
        batch = pb.MessageBatch()
        if first:  # the metadata already says who we are; the first batch repeats it once
            batch.cluster_id = self._cluster_id()
            batch.from_id = self._local_id
            batch.to_id = self.peer_id
            batch.ack_every = self._ack_every
        total = 0
        queue = self._queue
        add = batch.messages.add
        while queue:
            msg, size = queue[0]
            if total and total + size > self._opts.batch_bytes:
                break
            queue.popleft()
            self._queued_bytes -= size
            total += size
            fill_message(add(), msg)
        return batch

    # --- snapshots ---

    async def _send_snapshot(self, msg: Message, payload: SnapshotPayload) -> None:
        url = self.urls[self._url_index % len(self.urls)]
        failed = True
        try:
            if payload.prepare is not None:
                payload = await asyncio.to_thread(payload.prepare)
            async with grpc.aio.insecure_channel(
                grpc_target(url), options=channel_options(self._opts)
            ) as ch:
                ack = await pb_grpc.RaftPeerStub(ch).SendSnapshot(
                    self._snapshot_chunks(msg, payload), metadata=self._metadata()
                )
            failed = ack.received_bytes != payload.size
            log.info(
                "sent database snapshot",
                **{"remote-peer-id": f"{self.peer_id:x}", "bytes": ack.received_bytes},
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "failed to send database snapshot",
                **{"remote-peer-id": f"{self.peer_id:x}", "error": str(exc)},
            )
        finally:
            # Raft waits in StateSnapshot for this report; it must come however the send ends.
            self._sink.report_snapshot(self.peer_id, failed)

    async def _snapshot_chunks(
        self, msg: Message, payload: SnapshotPayload
    ) -> AsyncIterator[pb.SnapshotChunk]:
        reader = SnapshotReader(payload)
        try:
            header = pb.SnapshotHeader(
                cluster_id=self._cluster_id(), from_id=self._local_id, to_id=self.peer_id,
                size=payload.size,
            )
            fill_message(header.message, msg)
            header.message.snapshot.data = b""  # the data follows in chunks
            yield pb.SnapshotChunk(header=header)
            while True:
                data = await asyncio.to_thread(reader.read_chunk)
                if not data:
                    break
                yield pb.SnapshotChunk(data=data)
            yield pb.SnapshotChunk(sha256=reader.digest())
        finally:
            await asyncio.to_thread(reader.close)

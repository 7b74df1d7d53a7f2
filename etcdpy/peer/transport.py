"""`GrpcTransport`: the member's peer transport (etcd's rafthttp Transporter, over gRPC).

Lifecycle, all on one event loop:

    transport = GrpcTransport(local_id, cluster_id, sink, listen_urls=[...],
                              http_handler=PeerHttpHandler(...), snapshot_dir=...)
    await transport.start()             # serves the peer port(s)
    transport.add_peer(2, ["http://10.0.0.2:2380"])
    transport.send(ready.messages)      # never blocks, never raises
    ...
    await transport.stop()

Receiving: one grpc.aio server (the `RaftPeer` servicer, `service.py`). With
`shared_port` (default) it listens on a private Unix socket and each listen URL gets an
`etcdpy.netshare.SharedPort` in front that also answers HTTP/1.1 (`GET /members`,
`GET /version`) and the message streams that skip gRPC (`stream.py`); otherwise gRPC binds the
TCP ports itself and there is no HTTP (senders then use gRPC streams).
Sending: one `PeerSender` per peer (`sender.py`).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Sequence
from urllib.parse import urlsplit

import grpc

from etcdpy import logutil
from etcdpy._pb.peerpb import peer_pb2_grpc as pb_grpc
from etcdpy.netshare import HttpHandler, HttpRequest, HttpResponse, SharedPort
from etcdpy.raft import Message, MessageType
from etcdpy.sockdir import SocketDir

from .options import MAX_GRPC_MESSAGE, TransportOptions
from .sender import LinkState, PeerSender
from .service import PeerGate, RaftPeerServicer
from .sink import MessageSink
from .snapshot import SnapshotPayload
from .stream import PATH as STREAM_PATH
from .stream import StreamServer

__all__ = ["GrpcTransport", "LinkState", "MessageSink", "SnapshotPayload", "TransportOptions"]

log = logutil.get("peer")


def _server_options() -> list[tuple[str, int]]:
    return [
        # etcd's peer servers allow client pings every 5 s, even with no call in flight.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.keepalive_time_ms", 10000),
        ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
    ]


async def _no_http(req: HttpRequest) -> HttpResponse:
    return HttpResponse.text(404, "404 page not found\n")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "localhost", 2380 if parts.port is None else parts.port


class GrpcTransport:
    def __init__(
        self,
        local_id: int,
        cluster_id: int,
        sink: MessageSink,
        *,
        listen_urls: Sequence[str] = (),
        advertise_urls: Sequence[str] = (),
        http_handler: HttpHandler | None = None,
        snapshot_dir: str,
        options: TransportOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.local_id = local_id
        # Read on every connection and RPC, so a joining member may set it once it learns it.
        self.cluster_id = cluster_id
        self._sink = sink
        self._listen_urls = tuple(listen_urls)
        self._advertise_urls = tuple(advertise_urls)  # told to every peer we send to
        self._http = http_handler or _no_http
        self._snapshot_dir = snapshot_dir
        self._opts = options or TransportOptions()
        self._rng = rng or random.Random()
        self._peers: dict[int, PeerSender] = {}
        # Senders to members this one does not know yet (etcd's remotes): added when such a
        # member sends us something, with the URLs it advertised, so that a member that was
        # down while the membership changed can answer the new members and catch up. A remote
        # becomes a peer when the membership adds it. invariant: _remotes <= _peers.keys()
        self._remotes: set[int] = set()
        self._server: grpc.aio.Server | None = None
        self._streams: StreamServer | None = None
        self._fronts: list[SharedPort] = []
        self._tcp_ports: list[int] = []
        self._sock_dir: SocketDir | None = None
        self.unknown_target_drops = 0
        self._started = False

    # --- lifecycle ---

    async def start(self) -> None:
        """Serve the listen URLs (raises OSError when a port cannot be bound)."""
        assert not self._started
        self._started = True
        if not self._listen_urls:
            return
        server = grpc.aio.server(options=_server_options())
        gate = PeerGate(self.local_id, lambda: self.cluster_id, self._sink, self.add_remote)
        servicer = RaftPeerServicer(gate, self._snapshot_dir, self._opts.max_incoming_snapshots)
        pb_grpc.add_RaftPeerServicer_to_server(servicer, server)
        self._streams = StreamServer(gate, self._opts.keepalive_s)
        self._server = server
        try:
            if self._opts.shared_port:
                self._sock_dir = SocketDir("peer")
                sock_path = os.path.join(self._sock_dir.path, "grpc.sock")
                server.add_insecure_port(f"unix:{sock_path}")
                await server.start()
                for url in self._listen_urls:
                    host, port = _host_port(url)
                    front = SharedPort(host, port, sock_path, self._serve_http,
                                       self._opts.port_front)
                    await front.start()
                    self._fronts.append(front)
            else:
                for url in self._listen_urls:
                    host, port = _host_port(url)
                    bound = server.add_insecure_port(f"{host}:{port}")
                    if bound == 0:
                        raise OSError(f"cannot listen on {url}")
                    self._tcp_ports.append(bound)
                await server.start()
        except BaseException:
            await self.stop()
            raise
        log.info("serving peer traffic", **{"listen-peer-urls": list(self._listen_urls),
                                              "ports": self.listen_ports()})

    async def _serve_http(self, req: HttpRequest) -> HttpResponse:
        if req.path == STREAM_PATH and self._streams is not None:
            return self._streams.answer(req)
        return await self._http(req)

    async def stop(self) -> None:
        """Stop every sender and the server; waits, with bounded grace, for all of them."""
        peers, self._peers = list(self._peers.values()), {}
        for sender in peers:
            await sender.stop()
        for front in self._fronts:
            await front.stop()
        self._fronts = []
        if self._server is not None:
            await self._server.stop(grace=1.0)
            self._server = None
        if self._sock_dir is not None:
            self._sock_dir.close()
            self._sock_dir = None

    def listen_ports(self) -> list[int]:
        """The bound TCP ports, in listen URL order (useful with port 0)."""
        return [f.port for f in self._fronts] if self._fronts else list(self._tcp_ports)

    # --- membership of the transport ---

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        assert peer_id != self.local_id, "a member does not send to itself"
        if peer_id in self._remotes:  # known at last: the membership's URLs from now on
            self._remotes.discard(peer_id)
            self._peers[peer_id].set_urls(urls)
            return
        if peer_id in self._peers:
            return
        self._peers[peer_id] = self._start_sender(peer_id, urls)
        log.info("added remote peer", **{"remote-peer-id": f"{peer_id:x}",
                                         "remote-peer-urls": list(urls)})

    def add_remote(self, peer_id: int, urls: Sequence[str]) -> None:
        """A member not (yet) in our membership sent us something, advertising `urls`: keep
        a sender to it until the membership catches up (etcd's Transport.AddRemote)."""
        if peer_id == self.local_id or peer_id in self._peers or not urls:
            return
        self._peers[peer_id] = self._start_sender(peer_id, urls)
        self._remotes.add(peer_id)
        log.info("added new remote peer", **{"local-member-id": f"{self.local_id:x}",
                                             "remote-peer-id": f"{peer_id:x}",
                                             "remote-peer-urls": list(urls)})

    def _start_sender(self, peer_id: int, urls: Sequence[str]) -> PeerSender:
        sender = PeerSender(
            peer_id, urls, self.local_id, lambda: self.cluster_id, self._sink, self._opts,
            self._rng, self._advertise_urls,
        )
        sender.start()
        return sender

    async def remove_peer(self, peer_id: int) -> None:
        self._remotes.discard(peer_id)
        sender = self._peers.pop(peer_id, None)
        if sender is not None:
            await sender.stop()
            log.info("removed remote peer", **{"remote-peer-id": f"{peer_id:x}"})

    def update_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        sender = self._peers.get(peer_id)
        if sender is not None:
            sender.set_urls(urls)

    def peers(self) -> dict[int, tuple[str, ...]]:
        """The members' senders (remotes excluded) and their URLs."""
        return {pid: s.urls for pid, s in self._peers.items() if pid not in self._remotes}

    def remotes(self) -> dict[int, tuple[str, ...]]:
        """Senders to members not in our membership yet (see add_remote)."""
        assert self._remotes <= self._peers.keys()
        return {pid: self._peers[pid].urls for pid in self._remotes}

    def active_since(self, peer_id: int) -> float | None:
        """Wall-clock time the current stream to `peer_id` became active; None if it is not."""
        sender = self._peers.get(peer_id)
        return sender.active_since if sender is not None else None

    def link_state(self, peer_id: int) -> LinkState | None:
        sender = self._peers.get(peer_id)
        return sender.state if sender is not None else None

    def stream_kind(self, peer_id: int) -> str:
        """"raw" or "grpc": what the active stream to `peer_id` is; "" when none is."""
        sender = self._peers.get(peer_id)
        return sender.stream_kind if sender is not None else ""

    def dropped(self, peer_id: int) -> int:
        """Messages to `peer_id` dropped so far (full queue, broken link, busy snapshot)."""
        sender = self._peers.get(peer_id)
        return sender.dropped if sender is not None else 0

    # --- sending ---

    def send(self, messages: Sequence[Message]) -> None:
        """Queue each message for its peer. Never blocks and never raises: a message to an
        unknown peer or over a full queue is dropped and counted. Call on the event loop."""
        for msg in messages:
            sender = self._peers.get(msg.to)
            if sender is None:
                self.unknown_target_drops += 1
                log.debug("ignored message to unknown peer", **{"remote-peer-id": f"{msg.to:x}"})
                continue
            try:
                if msg.type == MessageType.SNAP:
                    self._send_snapshot(sender, msg)
                else:
                    sender.enqueue(msg)
            except Exception:  # e.g. a sink callback's bug: the Raft loop must not see it
                log.error("failed to queue a peer message", exc_info=True)

    def _send_snapshot(self, sender: PeerSender, msg: Message) -> None:
        try:
            payload = self._sink.snapshot_payload(msg)
        except Exception:
            log.error("cannot open snapshot payload", exc_info=True)
            with contextlib.suppress(Exception):
                self._sink.report_snapshot(sender.peer_id, True)
            return
        if not sender.send_snapshot(msg, payload):
            self._sink.report_snapshot(sender.peer_id, True)

"""Tunables of the peer transport and the gRPC metadata keys it exchanges."""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdpy.netshare import SharedPortOptions

from .backoff import BackoffPolicy

# Metadata on every peer RPC, in etcd's header names (lower case, as HTTP/2 requires): the
# receiver refuses another cluster's members and messages meant for another member.
MD_CLUSTER_ID = "x-etcd-cluster-id"
MD_FROM = "x-server-from"
MD_TO = "x-raft-to"
# The sender's advertised peer URLs (etcd's X-PeerURLs): a member that fell behind the cluster's
# membership learns from it where to answer a member it does not know yet (etcd's AddRemote).
MD_PEER_URLS = "x-peerurls"
# What a member answers a removed member's stream (NOT_FOUND); the sender that sees it stops
# its node, as etcd's rafthttp does on 410 Gone.
REMOVED_MESSAGE = "the member has been permanently removed from the cluster"

MAX_GRPC_MESSAGE = 64 * 1024 * 1024  # a batch carries at most one over-limit message


@dataclass(frozen=True, slots=True)
class TransportOptions:
    # Per-peer queue bounds (etcd's stream buffer is 4096 messages). When either is reached,
    # new messages to that peer are dropped and counted; Raft retransmits what matters.
    queue_messages: int = 4096
    queue_bytes: int = 64 * 1024 * 1024
    # One MessageBatch carries queued messages up to this many bytes (one larger message
    # still goes alone).
    batch_bytes: int = 1024 * 1024
    # Batches written but not yet acknowledged by the receiver; beyond this the sender waits
    # (and its queue absorbs, then drops) rather than piling up in gRPC buffers. The receiver
    # acknowledges every half window (sender.ack_interval).
    max_inflight_batches: int = 8
    connect_timeout_s: float = 3.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    # Client keepalive pings; the server permits pings every 5 s.
    keepalive_time_s: float = 10.0
    keepalive_timeout_s: float = 5.0
    max_incoming_snapshots: int = 2
    # Serve gRPC and HTTP/1.1 on one port through etcdpy.netshare; False binds gRPC alone.
    shared_port: bool = True
    port_front: SharedPortOptions = field(default_factory=SharedPortOptions)

    # Send Raft messages on streams of our own beside gRPC (`stream.py`) where the peer
    # offers them; False keeps to gRPC streams (for comparing, and tests of that path).
    raw_streams: bool = True

    @property
    def keepalive_s(self) -> tuple[float, float]:
        return self.keepalive_time_s, self.keepalive_timeout_s

    def __post_init__(self) -> None:
        assert self.queue_messages > 0 and self.queue_bytes > 0
        assert 0 < self.batch_bytes < MAX_GRPC_MESSAGE
        assert self.max_inflight_batches > 0 and self.max_incoming_snapshots > 0

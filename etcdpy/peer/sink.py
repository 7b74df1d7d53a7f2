"""What the transport needs from the node: etcd's rafthttp `Raft` interface, plus snapshots."""

from __future__ import annotations

from typing import Protocol

from etcdpy.raft import Message

from .snapshot import SnapshotPayload


class MessageSink(Protocol):
    """Implemented by the node. Every method is called on the event loop thread and must not
    block: the transport calls them between network reads."""

    def process(self, msg: Message) -> None:
        """A message from a peer, in the order the peer sent it (step it into Raft)."""

    def report_unreachable(self, node_id: int) -> None:
        """Sending to `node_id` failed (connection refused, broken or refused by the peer)."""

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        """A MsgSnap to `node_id` has been fully delivered (failed=False) or has not."""

    def report_removed_by_peer(self, node_id: int) -> None:
        """Peer `node_id` refused us because we were removed from the cluster (etcd's rafthttp
        gets 410 Gone and stops the server): the node stops, it will never be let back in."""

    def is_removed(self, node_id: int) -> bool:
        """True once `node_id` was removed from the cluster: its messages are refused."""

    def snapshot_payload(self, msg: Message) -> SnapshotPayload:
        """The bytes to stream for an outgoing MsgSnap (its `snapshot.data`, or the state
        database file the node associates with it). Called when `send` sees the message."""

    def snapshot_received(self, msg: Message, payload_path: str) -> None:
        """An incoming MsgSnap whose payload has arrived whole in the file `payload_path`.
        `msg.snapshot.data` is empty; the file now belongs to the node (move or delete it)."""

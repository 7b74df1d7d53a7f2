"""Shared helpers for the peer transport tests: a recording sink and bounded waits."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from etcdpy.peer.options import TransportOptions
from etcdpy.peer.snapshot import SnapshotPayload
from etcdpy.peer.transport import GrpcTransport
from etcdpy.raft import Message, MessageType

CLUSTER = 0xC1C1
# Whether make_transport's senders try raw streams (stream.py) before gRPC: the `streams`
# fixture runs a test both ways.
RAW_STREAMS = [True]


@dataclass
class RecordingSink:
    """A MessageSink that remembers everything the transport told it."""

    removed: set[int] = field(default_factory=set)
    processed: list[Message] = field(default_factory=list)
    unreachable: list[int] = field(default_factory=list)
    removed_by: list[int] = field(default_factory=list)
    snapshot_reports: list[tuple[int, bool]] = field(default_factory=list)
    received_snapshots: list[tuple[Message, str]] = field(default_factory=list)
    payloads: dict[int, SnapshotPayload] = field(default_factory=dict)  # by snapshot index

    def process(self, msg: Message) -> None:
        self.processed.append(msg)

    def report_unreachable(self, node_id: int) -> None:
        self.unreachable.append(node_id)

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        self.snapshot_reports.append((node_id, failed))

    def report_removed_by_peer(self, node_id: int) -> None:
        self.removed_by.append(node_id)

    def is_removed(self, node_id: int) -> bool:
        return node_id in self.removed

    def snapshot_payload(self, msg: Message) -> SnapshotPayload:
        assert msg.snapshot is not None
        return self.payloads[msg.snapshot.metadata.index]

    def snapshot_received(self, msg: Message, payload_path: str) -> None:
        self.received_snapshots.append((msg, payload_path))


async def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll `cond` until true; fail with `what` after `timeout_s` (a bound, not a measurement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app(frm: int, to: int, index: int, data: bytes = b"") -> Message:
    from etcdpy.raft import Entry

    entries = (Entry(term=1, index=index, data=data),) if data else ()
    return Message(type=MessageType.APP, to=to, from_=frm, term=1, index=index, entries=entries)


def make_transport(
    member_id: int,
    sink: RecordingSink,
    tmp: str,
    *,
    cluster_id: int = CLUSTER,
    port: int = 0,
    options: TransportOptions | None = None,
    **kwargs: object,
) -> GrpcTransport:
    options = dataclasses.replace(options or TransportOptions(), raw_streams=RAW_STREAMS[0])
    return GrpcTransport(
        member_id, cluster_id, sink,
        listen_urls=[f"http://127.0.0.1:{port}"],
        snapshot_dir=os.path.join(tmp, f"snap-{member_id}"),
        options=options,
        rng=random.Random(member_id),
        **kwargs,  # type: ignore[arg-type]
    )


def url_of(t: GrpcTransport) -> str:
    return f"http://127.0.0.1:{t.listen_ports()[0]}"

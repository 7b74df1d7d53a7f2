"""The ReadIndex queue of a leader (safe mode): requests wait for a heartbeat quorum.

Each request is keyed by its context.  A heartbeat round carries the context of the
newest request; when a quorum acknowledges it, that request and every request queued
before it are answered, because leadership was confirmed after all of them arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import Message

# Bound on queued read requests: beyond it new requests are dropped (the client retries),
# so a leader cut off from its quorum cannot grow this queue without limit.
MAX_PENDING_READS = 4096


@dataclass(slots=True)
class ReadIndexStatus:
    req: Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    """Invariant: `queue` lists exactly the keys of `pending`, oldest first."""

    def __init__(self, lease_based: bool) -> None:
        self.lease_based = lease_based
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> bool:
        """Queue a request read at `index`; False if dropped (duplicate ctx or queue full)."""
        ctx = m.context
        if ctx in self.pending or len(self.queue) >= MAX_PENDING_READS:
            return False
        self.pending[ctx] = ReadIndexStatus(req=m, index=index)
        self.queue.append(ctx)
        return True

    def recv_ack(self, node_id: int, ctx: bytes) -> dict[int, bool] | None:
        """Record that node_id confirmed our leadership for ctx; returns the acks so far."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(node_id)
        return dict.fromkeys(rs.acks, True)

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Dequeue and return the request for ctx and every request queued before it."""
        if ctx not in self.pending:
            return []
        n = self.queue.index(ctx) + 1
        done = [self.pending.pop(c) for c in self.queue[:n]]
        self.queue = self.queue[n:]
        assert len(self.queue) == len(self.pending)
        return done

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""

"""Watch streams as a test client sees them, and their responses as comparable logs.

How etcd batches events into responses depends on timing (a watcher catching up from history
gets many revisions at once), and the responses of different watchers on one stream
interleave freely. What must agree is, per watcher: its created response, then its events one
by one, then its cancellation. So a stream's log is grouped by watch id and events are
flattened; responses with watch id -1 (failed creates, progress answers) keep their order.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.diff.normalize import Plain, plain

REQUEST_QUEUE = 64  # requests waiting to go out on one stream
MAX_RESPONSES = 20_000  # a script makes a few hundred events per watcher at most

WatchLog = dict[int, list[Plain]]


def entry(resp: pb.WatchResponse) -> list[Plain]:
    """The log entries of one response: one per event, else one for the response itself."""
    if resp.events:
        events: list[Plain] = [{"event": plain(event)} for event in resp.events]
        # Where a response was cut in fragments matters; how events were batched does not.
        return [*events, {"fragment": True}] if resp.fragment else events
    out: dict[str, Plain] = {"revision": resp.header.revision}
    if resp.created:
        out["created"] = True
    if resp.canceled:
        out["canceled"] = True
    if resp.compact_revision:
        out["compact_revision"] = resp.compact_revision
    if resp.cancel_reason:
        out["cancel_reason"] = resp.cancel_reason
    if not (resp.created or resp.canceled):
        out["progress"] = True
    return [out]


def grouped(responses: list[pb.WatchResponse]) -> WatchLog:
    log: WatchLog = {}
    for resp in responses:
        log.setdefault(resp.watch_id, []).extend(entry(resp))
    return log


def split_revisions(responses: list[pb.WatchResponse]) -> list[tuple[int, int]]:
    """(watch id, revision) pairs whose events came in more than one response: etcd's
    atomicity guarantee says this never happens, fragments of one response aside."""
    seen: dict[int, set[int]] = {}  # revisions of the watcher's finished responses
    open_fragments: dict[int, set[int]] = {}  # revisions of a response still in fragments
    split = []
    for resp in responses:
        revs = {e.kv.mod_revision for e in resp.events}
        earlier = seen.setdefault(resp.watch_id, set())
        split.extend((resp.watch_id, rev) for rev in sorted(revs & earlier))
        pending = open_fragments.setdefault(resp.watch_id, set())
        pending |= revs
        if not resp.fragment:
            earlier |= pending
            pending.clear()
    return split


class WatchStream:
    """One Watch RPC: requests go out through a bounded queue, a thread collects responses."""

    def __init__(self, stub: pb_grpc.WatchStub, name: str) -> None:
        self.name = name
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue(REQUEST_QUEUE)
        self._responses: list[pb.WatchResponse] = []
        self._lock = threading.Lock()
        self.error: grpc.RpcError | None = None
        self._call = stub.Watch(self._outgoing())
        self._reader = threading.Thread(target=self._read, name=f"watch-{name}", daemon=True)
        self._reader.start()

    def _outgoing(self) -> Iterator[pb.WatchRequest]:
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def _read(self) -> None:
        try:
            for resp in self._call:
                with self._lock:
                    assert len(self._responses) < MAX_RESPONSES, f"{self.name}: runaway stream"
                    self._responses.append(resp)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = error

    def send(self, request: pb.WatchRequest) -> None:
        self._requests.put(request, timeout=10)

    def responses(self) -> list[pb.WatchResponse]:
        with self._lock:
            return list(self._responses)

    def created_count(self) -> int:
        with self._lock:
            return sum(1 for r in self._responses if r.created)

    def progress_count(self) -> int:
        with self._lock:
            return sum(1 for r in self._responses if _is_progress(r))

    def is_registered(self, watch_id: int) -> bool:
        """Created and not cancelled by the client (yet), as far as this client has heard. A
        watcher cancelled by a compaction stays registered: etcd still answers its cancel."""
        registered = False
        with self._lock:
            for r in self._responses:
                if r.watch_id != watch_id:
                    continue
                if r.created:
                    registered = not r.canceled
                elif r.canceled and not r.compact_revision:
                    registered = False
        return registered

    def saw_event(self, watch_id: int, key: bytes) -> bool:
        with self._lock:
            return any(
                r.watch_id == watch_id and any(e.kv.key == key for e in r.events)
                for r in self._responses
            )

    def close(self) -> None:
        # A full queue does not matter: cancelling the call ends the stream anyway.
        with contextlib.suppress(queue.Full):
            self._requests.put_nowait(None)
        self._call.cancel()
        self._reader.join(timeout=5)


def _is_progress(resp: pb.WatchResponse) -> bool:
    return not (resp.events or resp.created or resp.canceled) and resp.watch_id == -1

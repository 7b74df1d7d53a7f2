"""Watches: the member's watchers, fed by the apply loop and drained by Watch streams.

A watcher is *synced* when it has been sent every event up to the hub's revision (the last
revision the apply loop notified): new events go straight to it. Otherwise it is *unsynced*
and a catch-up task reads its missing events from the store's history, one bounded chunk at a
time, until it is synced again. A watcher whose stream cannot take more responses (a slow
client) is demoted to unsynced at the first event it did not get, so it never stalls the
writers or the other watchers, and loses nothing: it catches up from history (or is cancelled
with `compact_revision` if that history was compacted meanwhile, as etcd does).

Guarantees kept here (etcd's API guarantees): events reach a watcher in revision order, once
each, with no gaps; all events of one revision travel in one response unless the watcher asked
for fragments; a created response comes before any event of its watcher; a progress response
means everything up to its revision was delivered.

Everything runs on the event loop thread; no method awaits between reading the hub revision
and acting on it, which is what makes the synced/unsynced hand-over race-free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb

# Plain ints from the message classes (protobuf's enum wrappers resolve names in Python).
EventType = mvccpb.Event
FilterType = pb.WatchCreateRequest

# Texts etcd puts in cancel_reason.
EMPTY_RANGE = "mvcc: watcher range is empty"
DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
COMPACTED = "mvcc: required revision has been compacted"

CATCH_UP_CHUNK_EVENTS = 1000  # events read from history per watcher per round
STREAM_QUEUE_RESPONSES = 256  # responses a stream may hold before its watchers are demoted
# Events one queued response may gather from later revisions (a watcher that asked for
# fragments never has them joined: its responses keep to the size limit).
JOIN_MAX_EVENTS = 1000

K = TypeVar("K")  # what a group of watchers watches: a key, or a (key, range end) pair


class History(Protocol):
    """Read access to the store's past events."""

    def compacted_revision(self) -> int: ...

    def events(
        self, key: bytes, range_end: bytes, start_rev: int, end_rev: int, limit: int,
        prev_kv: bool,
    ) -> list[mvccpb.Event]:
        """Events with start_rev <= revision <= end_rev in the range, in revision order
        (prev_kv filled when asked), about `limit` of them but never a revision cut in half."""
        ...


def _in_range(key: bytes, start: bytes, end: bytes | None) -> bool:
    """end None = just `start`; b"" = every key >= start (etcd's "\\0" range end)."""
    if end is None:
        return key == start
    return start <= key and (not end or key < end)


def _without_prev_kv(event: mvccpb.Event) -> mvccpb.Event:
    """The event as a watcher that did not ask for prev_kv sees it."""
    if event.HasField("prev_kv"):
        return mvccpb.Event(type=event.type, kv=event.kv)
    return event


def serialized_events(events: Sequence[mvccpb.Event], revision: int) -> bytes:
    """A piece of a SerializedEvents: the events and the header revision, serialized."""
    resp = pb.WatchResponse(events=events)
    resp.header.revision = revision
    return resp.SerializeToString()


@dataclass(slots=True, eq=False)
class SerializedEvents:
    """An events response for one watcher, kept serialized: the fan-out serializes what a
    group of watchers sees once, not once per watcher, and a watcher's response is its pieces
    followed by its watch id and the header (`wire`). Protobuf reads concatenated messages as
    one merged message: repeated fields append (the events of joined pieces, in order) and
    the last scalar wins (the header revision of the newest piece)."""

    watch_id: int
    pieces: list[bytes]  # each from serialized_events, whole revisions, oldest first
    count: int  # events in the pieces; invariant: > 0

    def wire(self, tail: bytes) -> bytes:
        """The response as sent: `tail` holds the watch id and the rest of the header."""
        return b"".join(self.pieces) + tail

    def message(self) -> pb.WatchResponse:
        """The same response as a message (in-process readers: recipes, tests)."""
        resp = pb.WatchResponse.FromString(b"".join(self.pieces))
        resp.watch_id = self.watch_id
        return resp


Response = pb.WatchResponse | SerializedEvents


@dataclass(eq=False)
class Watcher:
    id: int
    key: bytes
    range_end: bytes | None
    next_rev: int  # the first revision not yet sent; invariant: > 0
    stream: WatchStream
    prev_kv: bool = False
    no_put: bool = False
    no_delete: bool = False
    progress_notify: bool = False
    fragment: bool = False
    synced: bool = False
    # Events went out since the last periodic progress notification (etcd then skips one).
    sent_since_progress: bool = False
    compacted: bool = False  # cancelled by a compaction; its id stays taken until cancelled

    def matches(self, event: mvccpb.Event) -> bool:
        if self.no_put and event.type == EventType.PUT:
            return False
        if self.no_delete and event.type == EventType.DELETE:
            return False
        return _in_range(event.kv.key, self.key, self.range_end)

    def shape(self, events: Sequence[mvccpb.Event]) -> list[mvccpb.Event]:
        """The watcher's view of matching events (prev_kv only when asked for)."""
        out = []
        for event in events:
            if not self.matches(event):
                continue
            out.append(event if self.prev_kv else _without_prev_kv(event))
        return out


class _ResponseQueue(asyncio.Queue[Response]):
    """A stream's outgoing responses. A response taken off it (however it is taken) is on
    its way to the client, so nothing may join it any more."""

    def __init__(self, maxsize: int, joinable: dict[int, SerializedEvents]) -> None:
        super().__init__(maxsize)
        self._joinable = joinable

    def _get(self) -> Response:
        resp: Response = super()._get()  # type: ignore[misc]
        if self._joinable.get(resp.watch_id) is resp:
            del self._joinable[resp.watch_id]
        return resp


@dataclass(eq=False)
class WatchStream:
    """One client Watch stream: its watchers and its outgoing responses."""

    hub: WatchHub
    max_response_bytes: int
    watchers: dict[int, Watcher] = field(default_factory=dict)
    # Event responses still in the queue, by watch id, that the same watcher's next events may
    # join (one response for several revisions, as etcd sends when events wait). Invariant:
    # each is in the queue, and nothing but other watchers' events was queued after it (any
    # other response empties this), so joining never moves an event past a created, cancel
    # or progress response.
    joinable: dict[int, SerializedEvents] = field(default_factory=dict)
    queue: _ResponseQueue = field(init=False)
    next_auto_id: int = 0
    pending_progress: bool = False
    closed: bool = False

    def __post_init__(self) -> None:
        self.queue = _ResponseQueue(STREAM_QUEUE_RESPONSES, self.joinable)

    def has_room(self) -> bool:
        return not self.closed and not self.queue.full()

    def _send(self, resp: pb.WatchResponse, revision: int) -> None:
        resp.header.revision = revision
        self.queue.put_nowait(resp)
        self.joinable.clear()

    def take(self) -> Response | None:
        """The next response to send, or None if there is none yet."""
        return None if self.queue.empty() else self.queue.get_nowait()

    def create(self, req: pb.WatchCreateRequest) -> None:
        """Handle a create request: always answers `created`, canceled on error."""
        hub = self.hub
        key = req.key or b"\x00"
        range_end: bytes | None = req.range_end or None
        if range_end == b"\x00":
            range_end = b""
        current = hub.revision
        resp = pb.WatchResponse(created=True)
        if range_end and key >= range_end:
            resp.watch_id, resp.canceled, resp.cancel_reason = -1, True, EMPTY_RANGE
            self._send(resp, current)
            return
        watch_id = req.watch_id
        if watch_id == 0:
            while self.next_auto_id in self.watchers:
                self.next_auto_id += 1
            watch_id = self.next_auto_id
            self.next_auto_id += 1
        elif watch_id in self.watchers:
            resp.watch_id, resp.canceled, resp.cancel_reason = -1, True, DUPLICATE_ID
            self._send(resp, current)
            return
        start = req.start_revision if req.start_revision != 0 else current + 1
        filters = set(req.filters)
        watcher = Watcher(
            id=watch_id,
            key=key,
            range_end=range_end,
            next_rev=max(start, 1) if start > 0 else start,
            stream=self,
            prev_kv=req.prev_kv,
            no_put=FilterType.NOPUT in filters,
            no_delete=FilterType.NODELETE in filters,
            progress_notify=req.progress_notify,
            fragment=req.fragment,
        )
        resp.watch_id = watch_id
        # The created response must precede any event: it is queued before the watcher joins.
        self._send(resp, current)
        self.watchers[watch_id] = watcher
        hub.add(watcher)

    def cancel(self, watch_id: int) -> None:
        watcher = self.watchers.pop(watch_id, None)
        if watcher is None:
            return
        self.hub.remove(watcher)
        self._send(pb.WatchResponse(watch_id=watch_id, canceled=True), self.hub.revision)

    def request_progress(self) -> None:
        """Answer with watch_id -1 at the hub revision once every watcher is synced."""
        self.pending_progress = True
        self.hub.flush_progress(self)

    def close(self) -> None:
        self.closed = True
        for watcher in self.watchers.values():
            self.hub.remove(watcher)
        self.watchers.clear()

    def send_events(self, watcher: Watcher, events: list[mvccpb.Event], revision: int) -> None:
        """Queue the events of one or more whole revisions, fragmenting when asked."""
        if not watcher.fragment:
            self.send_serialized(watcher, serialized_events(events, revision), len(events))
            return
        watcher.sent_since_progress = True
        chunk: list[mvccpb.Event] = []
        size = 0
        for event in events:
            event_size = event.ByteSize()
            if chunk and size + event_size > self.max_response_bytes:
                self._queue_events(
                    pb.WatchResponse(watch_id=watcher.id, events=chunk, fragment=True), revision)
                chunk, size = [], 0
            chunk.append(event)
            size += event_size
        self._queue_events(pb.WatchResponse(watch_id=watcher.id, events=chunk), revision)

    def send_serialized(self, watcher: Watcher, piece: bytes, count: int) -> None:
        """Queue `count` events of whole revisions, serialized (serialized_events), for a
        watcher that did not ask for fragments: joined to its response still waiting in the
        queue while that stays within JOIN_MAX_EVENTS."""
        assert count > 0 and not watcher.fragment
        watcher.sent_since_progress = True
        waiting = self.joinable.get(watcher.id)
        if waiting is not None and waiting.count + count <= JOIN_MAX_EVENTS:
            waiting.pieces.append(piece)
            waiting.count += count
            return
        resp = SerializedEvents(watcher.id, [piece], count)
        self.queue.put_nowait(resp)
        self.joinable[watcher.id] = resp

    def _queue_events(self, resp: pb.WatchResponse, revision: int) -> pb.WatchResponse:
        """Queue an events response (other watchers' joinable responses stay joinable)."""
        resp.header.revision = revision
        self.queue.put_nowait(resp)
        return resp

def _with_rev(resp: pb.WatchResponse, revision: int) -> pb.WatchResponse:
    resp.header.revision = revision
    return resp


class NewEvent(Protocol):
    """An event as the apply loop hands it over: the hub reads its key to match watchers and
    asks `to_pb` for the message only when some watcher matches (most writes have none)."""

    @property
    def kv(self) -> _Keyed: ...


class _Keyed(Protocol):
    @property
    def key(self) -> bytes: ...


def _already_pb(event: NewEvent) -> mvccpb.Event:
    assert isinstance(event, mvccpb.Event), type(event)
    return event


class WatchHub:
    """Every watcher of this member. `notify` is called by the apply loop after each commit."""

    def __init__(self, history: History, revision: int,
                 to_pb: Callable[[NewEvent], mvccpb.Event] = _already_pb) -> None:
        self._history = history
        self._to_pb = to_pb
        self.revision = revision  # the last revision whose events were notified
        # Synced watchers, grouped by what they watch: a fan-out (many watchers of one key or
        # prefix) checks each event against the group once, not once per watcher.
        self._single: dict[bytes, set[Watcher]] = {}  # by key
        self._ranges: dict[tuple[bytes, bytes], set[Watcher]] = {}  # by (key, range end)
        self._unsynced: set[Watcher] = set()
        self._wake = asyncio.Event()
        self._on_header: Callable[[pb.ResponseHeader], None] | None = None

    # --- membership of the synced/unsynced groups ---

    def add(self, watcher: Watcher) -> None:
        if watcher.next_rev > self.revision:
            self._set_synced(watcher)
        else:
            self._unsynced.add(watcher)
            self._wake.set()

    def remove(self, watcher: Watcher) -> None:
        self._unsynced.discard(watcher)
        self._unset_synced(watcher)

    def _set_synced(self, watcher: Watcher) -> None:
        watcher.synced = True
        if watcher.range_end is None:
            self._single.setdefault(watcher.key, set()).add(watcher)
        else:
            self._ranges.setdefault((watcher.key, watcher.range_end), set()).add(watcher)

    def _unset_synced(self, watcher: Watcher) -> None:
        if not watcher.synced:
            return
        watcher.synced = False
        if watcher.range_end is None:
            _leave(self._single, watcher.key, watcher)
        else:
            _leave(self._ranges, (watcher.key, watcher.range_end), watcher)

    def new_stream(self, max_response_bytes: int) -> WatchStream:
        return WatchStream(self, max_response_bytes)

    def watcher_count(self) -> int:
        return (sum(len(g) for g in self._single.values())
                + sum(len(g) for g in self._ranges.values()) + len(self._unsynced))

    # --- the write side ---

    def notify(self, revision: int, events: Sequence[NewEvent]) -> None:
        """Events of the revisions after `self.revision` up to `revision`, just committed."""
        assert revision >= self.revision, "the store's revision never goes back"
        first_rev = self.revision + 1
        self.revision = revision
        streams: set[WatchStream] = set()
        for group, in_range in self._matching_groups(events):
            # What the group's plain watchers are sent, serialized once for all of them:
            # with prev_kv (True) and without (False).
            shared: dict[bool, bytes] = {}
            for watcher in list(group):  # a watcher too slow to keep up leaves the group
                stream = watcher.stream
                streams.add(stream)
                shaped: list[mvccpb.Event] | None = None
                if (watcher.no_put or watcher.no_delete or watcher.fragment
                        or watcher.next_rev > in_range[0].kv.mod_revision):
                    # A filter, fragments, or a watcher created with a future start
                    # revision: synced, but it skips what comes before its start.
                    shaped = watcher.shape(
                        [e for e in in_range if e.kv.mod_revision >= watcher.next_rev])
                    if not shaped:
                        continue
                if not stream.has_room():
                    # Too slow: catch up from history from the first revision it missed.
                    self._unset_synced(watcher)
                    watcher.next_rev = max(first_rev, watcher.next_rev)
                    self._unsynced.add(watcher)
                    self._wake.set()
                elif shaped is not None:
                    stream.send_events(watcher, shaped, revision)
                else:
                    piece = shared.get(watcher.prev_kv)
                    if piece is None:
                        view = (in_range if watcher.prev_kv
                                else [_without_prev_kv(e) for e in in_range])
                        piece = shared[watcher.prev_kv] = serialized_events(view, revision)
                    stream.send_serialized(watcher, piece, len(in_range))
        for watcher in list(self._iter_synced()):
            watcher.next_rev = max(watcher.next_rev, revision + 1)
        for stream in streams:
            if stream.pending_progress:
                self.flush_progress(stream)

    def _matching_groups(self, events: Sequence[NewEvent]
                         ) -> list[tuple[set[Watcher], list[mvccpb.Event]]]:
        """Each group of synced watchers with an event in what it watches, with those events
        as messages (in revision order; the watchers' own filters are not applied yet)."""
        matched: list[tuple[set[Watcher], list[NewEvent]]] = []
        if self._single:
            by_key: dict[bytes, list[NewEvent]] = {}
            for event in events:
                if event.kv.key in self._single:
                    by_key.setdefault(event.kv.key, []).append(event)
            matched.extend((self._single[key], in_key) for key, in_key in by_key.items())
        for (start, end), group in self._ranges.items():
            in_range = [e for e in events if _in_range(e.kv.key, start, end)]
            if in_range:
                matched.append((group, in_range))
        if not matched:
            return []
        # Each event becomes a message once, however many groups it matched.
        as_pb: dict[int, mvccpb.Event] = {}
        to_pb = self._to_pb
        out: list[tuple[set[Watcher], list[mvccpb.Event]]] = []
        for group, hits in matched:
            converted = []
            for event in hits:
                message = as_pb.get(id(event))
                if message is None:
                    message = as_pb[id(event)] = to_pb(event)
                converted.append(message)
            out.append((group, converted))
        return out

    def _iter_synced(self):  # type: ignore[no-untyped-def]
        for group in self._single.values():
            yield from group
        for group in self._ranges.values():
            yield from group

    def resync(self, revision: int) -> None:
        """The store was replaced by a snapshot at `revision`: every watcher catches up from
        the new store's history from where it was (or is cancelled if that is compacted)."""
        for watcher in list(self._iter_synced()):
            self._unset_synced(watcher)
            self._unsynced.add(watcher)
        self.revision = revision
        self._wake.set()

    def compacted(self, compact_rev: int) -> None:
        """A compaction happened: unsynced watchers behind it will be cancelled on catch-up."""
        if self._unsynced:
            self._wake.set()

    # --- progress ---

    def flush_progress(self, stream: WatchStream) -> None:
        if not stream.pending_progress or stream.queue.full():
            return
        if any(not (w.synced or w.compacted) for w in stream.watchers.values()):
            return  # answered when the last one catches up
        stream.pending_progress = False
        stream._send(pb.WatchResponse(watch_id=-1), self.revision)

    def progress_tick(self) -> None:
        """Periodic progress notification for idle synced watchers that asked for it."""
        for watcher in list(self._iter_synced()):
            if not watcher.progress_notify:
                continue
            if watcher.sent_since_progress:
                watcher.sent_since_progress = False
            elif watcher.stream.has_room():
                watcher.stream._send(pb.WatchResponse(watch_id=watcher.id), self.revision)

    # --- catching up ---

    def catch_up_once(self) -> bool:
        """One round over the unsynced watchers; True when some remain (call again)."""
        compact_rev = self._history.compacted_revision()
        for watcher in list(self._unsynced):
            stream = watcher.stream
            if stream.closed:
                self._unsynced.discard(watcher)
                continue
            if not stream.has_room():
                continue
            if watcher.next_rev < compact_rev:  # etcd still serves the compacted revision itself
                self._unsynced.discard(watcher)
                # etcd keeps the id on the stream: a later cancel of it is still answered.
                watcher.compacted = True
                # etcd flags it canceled only for a non-zero compact_revision (after a
                # compaction at revision 0 the watcher just goes quiet).
                resp = pb.WatchResponse(
                    watch_id=watcher.id, canceled=compact_rev != 0, compact_revision=compact_rev
                )
                stream._send(resp, 0)  # etcd sends this one with header revision 0
                continue
            if watcher.next_rev <= self.revision:
                events = self._history.events(
                    watcher.key,
                    _store_range_end(watcher.range_end),
                    watcher.next_rev,
                    self.revision,
                    CATCH_UP_CHUNK_EVENTS,
                    watcher.prev_kv,
                )
                if events:
                    last_rev = events[-1].kv.mod_revision
                    shaped = watcher.shape(events)
                    if shaped:
                        stream.send_events(watcher, shaped, self.revision)
                    watcher.next_rev = last_rev + 1
                else:
                    watcher.next_rev = self.revision + 1
            if watcher.next_rev > self.revision:
                self._unsynced.discard(watcher)
                self._set_synced(watcher)
                if stream.pending_progress:
                    self.flush_progress(stream)
        return bool(self._unsynced)

    async def run_catch_up(self) -> None:
        """Background task: catch unsynced watchers up, yielding to the loop between rounds."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.catch_up_once():
                await asyncio.sleep(0.01)  # let slow streams drain before the next round

    def stream_drained(self) -> None:
        """A stream took responses off its queue: demoted watchers may continue."""
        if self._unsynced:
            self._wake.set()


def _leave(groups: dict[K, set[Watcher]], what: K, watcher: Watcher) -> None:
    """Take `watcher` out of its group, and the group out once it is empty."""
    group = groups.get(what)
    if group is not None:
        group.discard(watcher)
        if not group:
            del groups[what]


def _store_range_end(range_end: bytes | None) -> bytes:
    """Back to the request convention: b"" single key, b"\\0" every key from start."""
    if range_end is None:
        return b""
    return range_end or b"\x00"

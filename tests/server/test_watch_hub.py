"""The watch hub's delivery rules, over an in-memory history (a unit test of one module)."""

from __future__ import annotations

import asyncio

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb
from etcdpy.server import watch
from etcdpy.server.watch import WatchHub

PUT = mvccpb.Event.EventType.PUT
DELETE = mvccpb.Event.EventType.DELETE


class MemoryHistory:
    """Events by revision; one event per revision unless a test writes several."""

    def __init__(self) -> None:
        self.log: list[mvccpb.Event] = []
        self.compacted = 0

    def compacted_revision(self) -> int:
        return self.compacted

    def events(self, key: bytes, range_end: bytes, start_rev: int, end_rev: int, limit: int,
               prev_kv: bool) -> list[mvccpb.Event]:
        out = []
        for e in self.log:
            rev = e.kv.mod_revision
            if not start_rev <= rev <= end_rev:
                continue
            k = e.kv.key
            if range_end == b"":
                hit = k == key
            elif range_end == b"\x00":
                hit = k >= key
            else:
                hit = key <= k < range_end
            if hit:
                out.append(e)
        return out[:limit]


def put_event(key: bytes, rev: int, value: bytes = b"v") -> mvccpb.Event:
    return mvccpb.Event(type=PUT, kv=mvccpb.KeyValue(key=key, mod_revision=rev, value=value),
                        prev_kv=mvccpb.KeyValue(key=key, value=b"old"))


def write(hub: WatchHub, history: MemoryHistory, *events: mvccpb.Event) -> None:
    history.log.extend(events)
    hub.notify(events[-1].kv.mod_revision, list(events))


def drain(stream: watch.WatchStream) -> list[pb.WatchResponse]:
    """The queued responses as the client will read them (serialized ones parsed back)."""
    out = []
    while not stream.queue.empty():
        resp = stream.queue.get_nowait()
        out.append(resp.message() if isinstance(resp, watch.SerializedEvents) else resp)
    return out


def run(coro_fn):  # type: ignore[no-untyped-def]
    return asyncio.run(coro_fn())


def test_created_comes_first_and_ids_count_from_zero() -> None:
    async def scenario() -> None:
        history = MemoryHistory()
        hub = WatchHub(history, revision=1)
        stream = hub.new_stream(1 << 20)
        stream.create(pb.WatchCreateRequest(key=b"a"))
        stream.create(pb.WatchCreateRequest(key=b"b", prev_kv=True))
        write(hub, history, put_event(b"a", 2), put_event(b"b", 2))
        responses = drain(stream)
        assert [(r.watch_id, r.created) for r in responses[:2]] == [(0, True), (1, True)]
        by_id = {r.watch_id: r for r in responses[2:]}
        assert [e.kv.key for e in by_id[0].events] == [b"a"]
        assert not by_id[0].events[0].HasField("prev_kv")  # not asked for
        assert by_id[1].events[0].prev_kv.value == b"old"

    run(scenario)


def test_empty_range_and_duplicate_id_are_cancelled_at_creation() -> None:
    async def scenario() -> None:
        hub = WatchHub(MemoryHistory(), revision=1)
        stream = hub.new_stream(1 << 20)
        stream.create(pb.WatchCreateRequest(key=b"b", range_end=b"a"))
        stream.create(pb.WatchCreateRequest(key=b"a", watch_id=7))
        stream.create(pb.WatchCreateRequest(key=b"a", watch_id=7))
        first, second, third = drain(stream)
        assert first.canceled and first.cancel_reason == watch.EMPTY_RANGE
        assert second.watch_id == 7 and not second.canceled
        assert third.canceled and third.cancel_reason == watch.DUPLICATE_ID

    run(scenario)


def test_past_start_revision_replays_history_then_goes_live() -> None:
    async def scenario() -> None:
        history = MemoryHistory()
        hub = WatchHub(history, revision=1)
        for rev in range(2, 6):
            write(hub, history, put_event(b"k", rev))
        stream = hub.new_stream(1 << 20)
        stream.create(pb.WatchCreateRequest(key=b"k", start_revision=3))
        assert not hub.catch_up_once()
        write(hub, history, put_event(b"k", 6))
        revs = [e.kv.mod_revision for r in drain(stream) for e in r.events]
        assert revs == [3, 4, 5, 6]

    run(scenario)


def test_compacted_start_revision_is_cancelled_with_compact_revision() -> None:
    async def scenario() -> None:
        history = MemoryHistory()
        hub = WatchHub(history, revision=1)
        for rev in range(2, 6):
            write(hub, history, put_event(b"k", rev))
        history.compacted = 4
        stream = hub.new_stream(1 << 20)
        stream.create(pb.WatchCreateRequest(key=b"k", start_revision=2))
        hub.catch_up_once()
        created, cancelled = drain(stream)
        assert created.created
        assert cancelled.canceled and cancelled.compact_revision == 4

    run(scenario)


def test_slow_stream_is_demoted_and_catches_up_without_loss_or_duplicates() -> None:
    async def scenario() -> None:
        history = MemoryHistory()
        hub = WatchHub(history, revision=1)
        slow = hub.new_stream(1 << 20)
        fast = hub.new_stream(1 << 20)
        slow.create(pb.WatchCreateRequest(key=b"k"))
        fast.create(pb.WatchCreateRequest(key=b"k"))
        got_slow: list[int] = []
        got_fast: list[int] = []
        total = watch.STREAM_QUEUE_RESPONSES * 3
        for rev in range(2, 2 + total):
            write(hub, history, put_event(b"k", rev))
            got_fast.extend(e.kv.mod_revision for r in drain(fast) for e in r.events)
        # The slow stream filled up and was demoted; it drains and catches up from history.
        for _ in range(100):
            got_slow.extend(e.kv.mod_revision for r in drain(slow) for e in r.events)
            if not hub.catch_up_once() and slow.queue.empty():
                break
        got_slow.extend(e.kv.mod_revision for r in drain(slow) for e in r.events)
        expected = list(range(2, 2 + total))
        assert got_fast == expected
        assert got_slow == expected

    run(scenario)


def test_progress_request_waits_for_unsynced_watchers() -> None:
    async def scenario() -> None:
        history = MemoryHistory()
        hub = WatchHub(history, revision=1)
        for rev in range(2, 4):
            write(hub, history, put_event(b"k", rev))
        stream = hub.new_stream(1 << 20)
        stream.create(pb.WatchCreateRequest(key=b"k", start_revision=2))
        stream.request_progress()
        before = drain(stream)
        assert all(r.watch_id != -1 for r in before)  # not yet: the watcher is behind
        hub.catch_up_once()
        after = drain(stream)
        assert after[-1].watch_id == -1 and after[-1].header.revision == 3
        assert [e.kv.mod_revision for r in after for e in r.events] == [2, 3]

    run(scenario)


def test_filters_and_fragments() -> None:
    async def scenario() -> None:
        history = MemoryHistory()
        hub = WatchHub(history, revision=1)
        stream = hub.new_stream(max_response_bytes=64)
        stream.create(pb.WatchCreateRequest(key=b"a", range_end=b"z",
                                            filters=[pb.WatchCreateRequest.NOPUT]))
        stream.create(pb.WatchCreateRequest(key=b"a", range_end=b"z", fragment=True))
        drain(stream)
        delete = mvccpb.Event(type=DELETE, kv=mvccpb.KeyValue(key=b"b", mod_revision=2))
        write(hub, history, put_event(b"a", 2, b"x" * 50), put_event(b"c", 2, b"y" * 50), delete)
        responses = drain(stream)
        no_put = [r for r in responses if r.watch_id == 0]
        assert [e.type for r in no_put for e in r.events] == [DELETE]
        fragments = [r for r in responses if r.watch_id == 1]
        assert len(fragments) > 1
        assert all(r.fragment for r in fragments[:-1]) and not fragments[-1].fragment
        assert sum(len(r.events) for r in fragments) == 3

    run(scenario)


def per_watcher(responses: list[pb.WatchResponse]) -> dict[int, list[list[int]]]:
    """The event revisions of each response, by watcher, in the order they were queued."""
    out: dict[int, list[list[int]]] = {}
    for r in responses:
        out.setdefault(r.watch_id, []).append([e.kv.mod_revision for e in r.events])
    return out


def test_events_waiting_in_the_queue_join_one_response_per_watcher() -> None:
    async def scenario() -> None:
        history = MemoryHistory()
        hub = WatchHub(history, revision=1)
        stream = hub.new_stream(1 << 20)
        stream.create(pb.WatchCreateRequest(key=b"a"))  # watch 0
        stream.create(pb.WatchCreateRequest(key=b"b"))  # watch 1
        fragments = pb.WatchCreateRequest(key=b"a", fragment=True)
        stream.create(fragments)  # watch 2: asked for fragments, never joined
        assert [r.created for r in drain(stream)] == [True, True, True]

        for rev in (2, 3, 4):  # the client reads nothing meanwhile
            write(hub, history, put_event(b"a", rev), put_event(b"b", rev))
        got = drain(stream)
        # watch 0 and 1: one response each with all three revisions; watch 2: one per revision
        assert per_watcher(got) == {0: [[2, 3, 4]], 1: [[2, 3, 4]], 2: [[2], [3], [4]]}
        assert {r.header.revision for r in got if r.watch_id in (0, 1)} == {4}

        # A response taken off the queue is being sent: later events start a new one.
        write(hub, history, put_event(b"a", 5))
        taken = drain(stream)
        write(hub, history, put_event(b"a", 6))
        assert per_watcher(taken) == {0: [[5]], 2: [[5]]}
        assert per_watcher(drain(stream)) == {0: [[6]], 2: [[6]]}

        # Nothing joins across a progress response: the progress revision stays a promise
        # about everything before it.
        write(hub, history, put_event(b"b", 7))
        stream.request_progress()
        write(hub, history, put_event(b"b", 8))
        got = drain(stream)
        assert [(r.watch_id, [e.kv.mod_revision for e in r.events], r.header.revision)
                for r in got] == [(1, [7], 7), (-1, [], 7), (1, [8], 8)]

    asyncio.run(scenario())


def test_watchers_of_one_prefix_each_get_their_own_view_of_a_fan_out() -> None:
    """Watchers of the same range are checked as a group; each still gets what it asked for."""
    async def scenario() -> None:
        history = MemoryHistory()
        hub = WatchHub(history, revision=1)
        streams = [hub.new_stream(1 << 20) for _ in range(3)]
        prefix = pb.WatchCreateRequest(key=b"p/", range_end=b"p0")
        # per stream: plain, prev_kv, no-put filter, from a future revision, one key in it
        for s in streams:
            s.create(prefix)
            s.create(pb.WatchCreateRequest(key=b"p/", range_end=b"p0", prev_kv=True))
            s.create(pb.WatchCreateRequest(key=b"p/", range_end=b"p0",
                                           filters=[pb.WatchCreateRequest.NOPUT]))
            s.create(pb.WatchCreateRequest(key=b"p/", range_end=b"p0", start_revision=4))
            s.create(pb.WatchCreateRequest(key=b"p/b"))
            drain(s)
        streams[2].cancel(0)  # a cancelled member of the group hears nothing more
        drain(streams[2])
        delete = mvccpb.Event(type=DELETE, kv=mvccpb.KeyValue(key=b"p/b", mod_revision=3),
                              prev_kv=mvccpb.KeyValue(key=b"p/b", value=b"old"))
        write(hub, history, put_event(b"p/a", 2), put_event(b"q", 2))
        write(hub, history, delete)
        write(hub, history, put_event(b"p/c", 4))
        for index, s in enumerate(streams):
            got: dict[int, list[tuple[int, bytes, bool]]] = {}
            for r in drain(s):
                got.setdefault(r.watch_id, []).extend(
                    (e.kv.mod_revision, e.kv.key, e.HasField("prev_kv")) for e in r.events)
            expected = {
                0: [(2, b"p/a", False), (3, b"p/b", False), (4, b"p/c", False)],
                1: [(2, b"p/a", True), (3, b"p/b", True), (4, b"p/c", True)],
                2: [(3, b"p/b", False)],
                3: [(4, b"p/c", False)],
                4: [(3, b"p/b", False)],
            }
            if index == 2:
                del expected[0]
            assert got == expected, f"stream {index}"
        # the events the hub was given keep their prev_kv for the watchers that asked
        assert history.log[0].HasField("prev_kv")

    run(scenario)


def test_a_full_stream_in_the_middle_of_a_group_is_demoted_alone() -> None:
    async def scenario() -> None:
        history = MemoryHistory()
        hub = WatchHub(history, revision=1)
        streams = [hub.new_stream(1 << 20) for _ in range(5)]
        for s in streams:
            s.create(pb.WatchCreateRequest(key=b"p/", range_end=b"p0"))
            drain(s)
        total = watch.STREAM_QUEUE_RESPONSES + 10
        got: list[list[int]] = [[] for _ in streams]
        for rev in range(2, 2 + total):
            write(hub, history, put_event(b"p/k", rev))
            for i, s in enumerate(streams):
                if i != 2:  # stream 2 is not read until the end: it fills up
                    got[i].extend(e.kv.mod_revision for r in drain(s) for e in r.events)
        assert hub.watcher_count() == 5
        for _ in range(100):
            got[2].extend(e.kv.mod_revision for r in drain(streams[2]) for e in r.events)
            if not hub.catch_up_once() and streams[2].queue.empty():
                break
        expected = list(range(2, 2 + total))
        assert all(g == expected for g in got), [len(g) for g in got]

    run(scenario)


def test_a_serialized_response_reads_back_as_the_message_it_stands_for() -> None:
    """What the fan-out sends as bytes (pieces, then the watch id and header tail) parses as
    the WatchResponse the client would otherwise get: events of joined pieces in order, the
    newest piece's revision, the tail's watch id and header fields."""
    first = [put_event(b"k1", 7), put_event(b"k2", 7)]
    second = [put_event(b"k1", 9)]
    resp = watch.SerializedEvents(
        5, [watch.serialized_events(first, 7), watch.serialized_events(second, 9)], 3)
    header = pb.ResponseHeader(cluster_id=11, member_id=22, raft_term=3)
    for watch_id in (0, 5):
        resp.watch_id = watch_id
        tail = pb.WatchResponse(watch_id=watch_id, header=header).SerializeToString()
        got = pb.WatchResponse.FromString(resp.wire(tail))
        want = pb.WatchResponse(
            watch_id=watch_id, events=first + second,
            header=pb.ResponseHeader(cluster_id=11, member_id=22, raft_term=3, revision=9))
        assert got == want
        assert resp.message() == pb.WatchResponse(
            watch_id=watch_id, events=first + second, header=pb.ResponseHeader(revision=9))

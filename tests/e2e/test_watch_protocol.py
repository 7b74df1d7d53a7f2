"""The Watch stream at the gRPC level, against etcdpy and real etcd 3.5: created responses and
watch ids, empty-range and duplicate-id refusals, filters, prev_kv, progress requests, cancels,
history replay, compaction. Responses are compared per watch id (the order of responses of
different watchers is not specified), with identities and terms cleared.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.harness import Member, single_member, start_all
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e

WAIT_S = 10.0
SENTINEL = b"zz-end"  # the last write of a scenario
SENTINEL_WATCH = 1000  # the explicit id of the watcher on SENTINEL


def _create(**kw: Any) -> pb.WatchRequest:
    return pb.WatchRequest(create_request=pb.WatchCreateRequest(**kw))


def _cancel(watch_id: int) -> pb.WatchRequest:
    return pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id))


PROGRESS = pb.WatchRequest(progress_request=pb.WatchProgressRequest())


class Stream:
    """One Watch stream: requests go in through a bounded queue, responses are read by a
    thread into another."""

    def __init__(self, member: Member) -> None:
        self.channel = grpc.insecure_channel(member.endpoint)
        self.kv = pb_grpc.KVStub(self.channel)
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue(maxsize=100)
        self._responses: queue.Queue[pb.WatchResponse | None] = queue.Queue(maxsize=1000)
        self._call = pb_grpc.WatchStub(self.channel).Watch(self._request_iter())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _request_iter(self) -> Iterator[pb.WatchRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def _read(self) -> None:
        try:
            for resp in self._call:
                self._responses.put(resp)
        except grpc.RpcError:
            pass
        self._responses.put(None)

    def send(self, *requests: pb.WatchRequest) -> None:
        for r in requests:
            self._requests.put(r, timeout=WAIT_S)

    def until(self, done: Any, limit: int = 500) -> list[pb.WatchResponse]:
        """Responses up to and including the first that `done` accepts."""
        got: list[pb.WatchResponse] = []
        while len(got) < limit:
            try:
                resp = self._responses.get(timeout=WAIT_S)
            except queue.Empty:
                raise AssertionError(f"waiting for {done}; got {got}") from None
            assert resp is not None, f"stream ended after {got}"
            got.append(resp)
            if done(resp):
                return got
        raise AssertionError(f"nothing ended {limit} responses")

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(timeout=WAIT_S)
        self.channel.close()


def _by_watch_id(responses: list[pb.WatchResponse]) -> dict[int, list[str]]:
    """Per watch id: its created/cancel/progress answers and its events, in order. Headers
    and the grouping of events into responses are left out: a lagging watcher's history
    comes when the server gets to it, with the revision current at that moment."""
    out: dict[int, list[str]] = {}
    for resp in responses:
        items = out.setdefault(resp.watch_id, [])
        events = list(resp.events)
        del resp.events[:]
        resp.ClearField("header")
        if not events or resp.created or resp.canceled:
            items.append(str(resp))
        items.extend(str(ev) for ev in events)
    return out


CANCELED = 0


class Expect:
    """When a scenario's output is complete: each listed watcher has sent an event at (or
    after) its revision, or its cancel (CANCELED). etcd 3.5.1 delivers a lagging watcher's
    history on a later pass than newer events of other watchers, so no single response
    marks the end."""

    def __init__(self, last: dict[int, int]) -> None:
        self.missing = dict(last)

    def __repr__(self) -> str:
        return f"Expect(missing={self.missing})"

    def __call__(self, resp: pb.WatchResponse) -> bool:
        want = self.missing.get(resp.watch_id)
        if want is None:
            return not self.missing
        if resp.canceled if want == CANCELED else any(
                ev.kv.mod_revision >= want for ev in resp.events):
            del self.missing[resp.watch_id]
        return not self.missing


def _progress_answers(n: int) -> Callable[[pb.WatchResponse], bool]:
    """True at the n-th progress answer (watch id -1, not a refused create)."""
    seen = 0

    def done(resp: pb.WatchResponse) -> bool:
        nonlocal seen
        seen += resp.watch_id == -1 and not resp.created
        return seen == n

    return done


def _run(pair: Pair, setup: list[tuple[str, Any]], requests: list[pb.WatchRequest],
         writes: list[tuple[str, Any]], last: dict[int, int]) -> dict[int, list[str]]:
    """Same scenario on both; `last` says when it is complete (see Expect)."""
    answers = []
    for m in pair.members:
        stream = Stream(m)
        try:
            for method, request in setup:
                getattr(stream.kv, method)(request, timeout=WAIT_S)
            stream.send(*requests, _create(key=SENTINEL, watch_id=SENTINEL_WATCH), PROGRESS)
            # The progress answer comes once every watcher above is created and synced, so
            # the writes below reach watchers that watch "from now".
            first = stream.until(_progress_answers(sum(1 for r in requests if r == PROGRESS) + 1))
            for method, request in writes:
                getattr(stream.kv, method)(request, timeout=WAIT_S)
            stream.kv.Put(pb.PutRequest(key=SENTINEL, value=b"."), timeout=WAIT_S)
            sentinel_rev = stream.kv.Range(pb.RangeRequest(key=SENTINEL)).kvs[0].mod_revision
            expect = Expect({**last, SENTINEL_WATCH: sentinel_rev})
            for r in first:
                expect(r)
            rest = [] if not expect.missing else stream.until(expect)
            answers.append(_by_watch_id(first + rest))
        finally:
            stream.close()
    want, got = answers
    assert got == want
    return want


def test_create_refusals_filters_progress_and_cancel(pair: Pair) -> None:
    setup = [("Put", pb.PutRequest(key=b"a", value=b"1"))]
    requests = [
        _create(key=b"a"),                                   # id 0
        _create(key=b"b", range_end=b"a"),                   # refused: empty range
        _create(key=b"a", watch_id=7),                       # id 7
        _create(key=b"a", watch_id=7),                       # refused: duplicate id
        _create(key=b"a", filters=[pb.WatchCreateRequest.NOPUT], prev_kv=True),  # id 1
        PROGRESS,
        _cancel(0),
        _cancel(99),                                         # unknown: no answer
        _create(key=b"a", start_revision=1),                 # id 2, replays revision 2
        _create(key=b"a", range_end=b"\0", filters=[pb.WatchCreateRequest.NODELETE]),  # id 3
    ]
    writes = [("Put", pb.PutRequest(key=b"a", value=b"2")),
              ("DeleteRange", pb.DeleteRangeRequest(key=b"a")),
              ("Txn", pb.TxnRequest(success=[
                  pb.RequestOp(request_put=pb.PutRequest(key=b"a", value=b"3")),
                  pb.RequestOp(request_put=pb.PutRequest(key=b"b", value=b"3"))]))]
    seen = _run(pair, setup, requests, writes, last={7: 5, 1: 4, 2: 5, 3: 6})
    assert "mvcc: watcher range is empty" in seen[-1][0]
    assert "duplicate watch ID" in seen[-1][1]
    assert not any("events" in r for r in seen[0][1:])  # cancelled before the writes


def test_history_and_compaction(pair: Pair) -> None:
    setup = [("Put", pb.PutRequest(key=b"k%d" % (i % 3), value=b"%d" % i)) for i in range(12)]
    setup += [("DeleteRange", pb.DeleteRangeRequest(key=b"k1")),
              ("Compact", pb.CompactionRequest(revision=6))]
    requests = [
        _create(key=b"k", range_end=b"l", start_revision=6, prev_kv=True),  # from compaction
        _create(key=b"k0", start_revision=3),       # below it: cancelled, compact_revision 6
        _create(key=b"k2", start_revision=100),     # in the future: waits
        _create(key=b"k", range_end=b"l", start_revision=14),
    ]
    writes = [("Put", pb.PutRequest(key=b"k2", value=b"new"))]
    seen = _run(pair, setup, requests, writes, last={0: 15, 1: CANCELED, 3: 15})
    assert any("compact_revision: 6" in r for r in seen[1])


def test_delete_at_the_compaction_revision(pair: Pair) -> None:
    """The boundary etcd once got wrong: history starting exactly at a compacted delete."""
    setup = [("Put", pb.PutRequest(key=b"a", value=b"1")),
             ("Put", pb.PutRequest(key=b"b", value=b"1")),
             ("DeleteRange", pb.DeleteRangeRequest(key=b"a")),   # revision 4
             ("Put", pb.PutRequest(key=b"b", value=b"2")),
             ("Compact", pb.CompactionRequest(revision=4, physical=True))]
    requests = [
        _create(key=b"a", start_revision=4),
        _create(key=b"a", range_end=b"c", start_revision=4, prev_kv=True),
        _create(key=b"b", start_revision=5),
    ]
    writes = [("Put", pb.PutRequest(key=b"a", value=b"3")),
              ("Put", pb.PutRequest(key=b"b", value=b"3"))]
    _run(pair, setup, requests, writes, last={0: 6, 1: 7, 2: 7})


def test_fragmented_delete_with_prev_kv(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With fragment=true a response over --max-request-bytes plus etcd's 512 KiB gRPC
    allowance comes in pieces, all but the last marked `fragment`; put back together they are
    the one revision's events. A small DeleteRange with prev_kv makes such a response (its
    previous values are large)."""
    limit = 10_000
    KEYS = 64  # noqa: N806 - 64 x 9000 B of previous values: over 10_000 + 512 KiB
    base = tmp_path_factory.mktemp("frag")
    members = [single_member(kind, base, extra_args=["--max-request-bytes", str(limit)])
               for kind in ("etcd", "etcdpy")]
    try:
        start_all(members)
        answers = []
        for m in members:
            stream = Stream(m)
            try:
                for i in range(KEYS):
                    stream.kv.Put(pb.PutRequest(key=b"f/%02d" % i, value=b"x" * 9000),
                                  timeout=WAIT_S)
                stream.send(_create(key=b"f/", range_end=b"f0", fragment=True, prev_kv=True),
                            PROGRESS)
                stream.until(_progress_answers(1))
                stream.kv.DeleteRange(pb.DeleteRangeRequest(key=b"f/", range_end=b"f0"),
                                      timeout=WAIT_S)
                got = stream.until(lambda r: bool(r.events) and not r.fragment)
            finally:
                stream.close()
            pieces = [r for r in got if r.events]
            assert all(r.ByteSize() <= limit + 512 * 1024 for r in pieces[:-1])
            assert all(r.fragment for r in pieces[:-1])
            keys = [ev.prev_kv.key for r in pieces for ev in r.events]
            answers.append((keys, len(pieces)))
        assert answers[1] == answers[0]
        assert answers[0] == ([b"f/%02d" % i for i in range(KEYS)], 2)
    finally:
        for m in members:
            m.stop()


def test_odd_create_requests(pair: Pair) -> None:
    requests = [
        _create(key=b""),                                  # empty key
        _create(key=b"", range_end=b"\0"),                 # everything
        _create(key=b"a", filters=[5]),                    # an unknown filter
        _create(key=b"a", watch_id=-3),
        _cancel(-1),
        _create(key=b"a", range_end=b"\0", start_revision=1, prev_kv=True, fragment=True,
                progress_notify=True),
    ]
    writes = [("Put", pb.PutRequest(key=b"a", value=b"1")),
              ("DeleteRange", pb.DeleteRangeRequest(key=b"a", prev_kv=True))]
    # Watchers 1 and 3 also see the sentinel write (revision 4).
    seen = _run(pair, [], requests, writes, last={1: 4, 2: 3, -3: 3, 3: 4})
    assert len(seen[0]) == 1  # the empty key is a key like any other: nothing written to it

"""Watch streams against the guarantees: a correct stream passes, each kind of defect is named."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tests.faults import synth
from tests.faults.history import (
    EventType,
    History,
    KeyValue,
    Operation,
    OpKind,
    Request,
    Response,
    WatchEvent,
    WatchRecord,
    WatchResponse,
)
from tests.faults.verdict import check_history

A1 = KeyValue("a", "v1", 2, 2, 1)
B1 = KeyValue("b", "w1", 3, 3, 1, lease=7)
C1 = KeyValue("c", "x1", 4, 4, 1, lease=7)
A2 = KeyValue("a", "v2", 5, 2, 2)
B_GONE = KeyValue("b", "", 6, 0, 0)
C_GONE = KeyValue("c", "", 6, 0, 0)

EVENTS = {
    2: (WatchEvent(EventType.PUT, A1),),
    3: (WatchEvent(EventType.PUT, B1),),
    4: (WatchEvent(EventType.PUT, C1),),
    5: (WatchEvent(EventType.PUT, A2, prev_kv=A1),),
    6: (WatchEvent(EventType.DELETE, B_GONE, prev_kv=B1),
        WatchEvent(EventType.DELETE, C_GONE, prev_kv=C1)),  # one revoke, two keys
}


def operations() -> list[Operation]:
    def put(t: float, kv: KeyValue) -> Operation:
        return Operation(0, t, t + 0.5, Request(OpKind.PUT, kv.key, value=kv.value, lease=kv.lease),
                         Response(kv.mod_revision))

    return [
        Operation(0, 0, 0.5, Request(OpKind.LEASE_GRANT, lease=7), Response(1)),
        put(1, A1), put(2, B1), put(3, C1), put(4, A2),
        Operation(0, 5, 5.5, Request(OpKind.LEASE_REVOKE, lease=7), Response(6)),
    ]


def stream(*responses: WatchResponse, start: int = 2) -> WatchRecord:
    return WatchRecord(client=9, key="a", range_end="d", start_revision=start, prev_kv=True,
                       progress_notify=True, responses=list(responses))


def resp(t: float, *revs: int, header: int = 0) -> WatchResponse:
    events = tuple(e for r in revs for e in EVENTS[r])
    return WatchResponse(t, header or max(revs), events)


def bookmark(t: float, rev: int) -> WatchResponse:
    return WatchResponse(t, rev, progress_notify=True)


def run(*watches: WatchRecord) -> tuple[bool, str, str]:
    h = History(seed=3, keys=("a", "b", "c"), operations=operations(), watches=list(watches))
    result = check_history(h, timeout_s=10)
    assert not result.unknown
    return result.ok, result.kind, result.explanation


GOOD = stream(resp(1.6, 2), resp(3.6, 3, 4), resp(4.6, 5), bookmark(4.7, 5), resp(5.6, 6))


def test_a_correct_stream_passes() -> None:
    assert run(GOOD)[:2] == (True, "")


def test_a_stream_resumed_from_a_later_revision_passes() -> None:
    assert run(stream(resp(4.6, 5), resp(5.6, 6), start=5))[0]


def test_watch_from_now_starts_after_the_created_header() -> None:
    created = WatchResponse(2.7, 3)
    assert run(stream(created, resp(3.6, 4), resp(4.6, 5), resp(5.6, 6), start=0))[0]
    _ok, kind, _ = run(stream(created, resp(4.6, 5), resp(5.6, 6), start=0))
    assert kind == "watch:reliable"  # revision 4 was after creation and is missing


def test_canceled_by_compaction_is_fine() -> None:
    canceled = WatchResponse(2.0, 5, canceled=True, compact_revision=4,
                             cancel_reason="mvcc: required revision has been compacted")
    assert run(stream(canceled))[0]


@pytest.mark.parametrize(
    ("watch", "kind"),
    [
        (stream(resp(1.6, 2), resp(4.6, 5), resp(3.6, 3, 4), resp(5.6, 6)), "watch:ordered"),
        (stream(resp(1.6, 2), resp(1.7, 2), resp(3.6, 3, 4), resp(4.6, 5), resp(5.6, 6)),
         "watch:unique"),
        (stream(resp(1.6, 2), resp(3.6, 3, 4), resp(4.6, 5),
                WatchResponse(5.6, 6, EVENTS[6][:1]), WatchResponse(5.7, 6, EVENTS[6][1:])),
         "watch:atomic"),
        (stream(resp(1.6, 2), resp(3.6, 3, 4), resp(5.6, 6)), "watch:reliable"),
        (stream(resp(1.6, 2), resp(3.6, 3, 4), resp(4.6, 5), resp(5.6, 6), start=3),
         "watch:resumable"),
        (stream(resp(1.6, 2), bookmark(3.0, 4), resp(3.6, 3, 4), resp(4.6, 5), resp(5.6, 6)),
         "watch:bookmarkable"),
        (stream(resp(1.6, 2), resp(3.6, 3, 4),
                WatchResponse(4.6, 5, (WatchEvent(EventType.PUT, A2, prev_kv=None),)),
                resp(5.6, 6)),
         "watch:prev_kv"),
        (stream(resp(1.6, 2), resp(3.6, 3, 4),
                WatchResponse(4.6, 5, (WatchEvent(EventType.PUT, replace(A2, version=3),
                                                  prev_kv=A1),)),
                resp(5.6, 6)),
         "watch:event"),
    ],
    ids=["ordered", "unique", "atomic", "reliable", "resumable", "bookmarkable", "prev_kv",
         "event"],
)
def test_each_defect_is_named(watch: WatchRecord, kind: str) -> None:
    ok, got, explanation = run(watch)
    assert not ok
    assert got == kind, explanation
    assert "seed 3" in explanation and "watch 0" in explanation


def test_a_filter_violation() -> None:
    narrow = WatchRecord(client=9, key="a", range_end="", start_revision=2, prev_kv=True,
                         progress_notify=False, responses=[resp(1.6, 2), resp(2.6, 3)])
    assert run(narrow)[1] == "watch:filter"


def test_two_watches_that_disagree() -> None:
    other = WatchRecord(client=8, key="a", range_end="", start_revision=5, prev_kv=False,
                        progress_notify=False,
                        responses=[WatchResponse(4.6, 5, (WatchEvent(EventType.PUT, A1),))])
    ok, _kind, explanation = run(GOOD, other)
    assert not ok
    assert "consistent" in explanation or "event" in explanation


@pytest.mark.parametrize("seed", range(6))
def test_dropping_an_event_from_a_synthetic_watch_is_caught(seed: int) -> None:
    history = synth.generate(seed, synth.Shape(clients=3, operations=150, unknown_rate=0.0,
                                               watchers=1))
    assert check_history(history, timeout_s=30).ok
    w = history.watches[0]
    with_events = [i for i, r in enumerate(w.responses) if r.events]
    if len(with_events) < 3:
        return
    i = random.Random(seed).choice(with_events[:-1])
    w.responses[i] = replace(w.responses[i], events=w.responses[i].events[1:])
    result = check_history(history, timeout_s=30)
    assert not result.ok
    assert result.kind in ("watch:reliable", "watch:atomic"), result.explanation

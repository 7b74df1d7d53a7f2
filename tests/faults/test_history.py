"""The history record survives a JSON-lines round trip and refuses impossible operations."""

from __future__ import annotations

import io
import math

import pytest

from tests.faults import history as h


def _sample() -> h.History:
    kv = h.KeyValue(key="k1", value="v1", mod_revision=2, create_revision=2, version=1)
    ops = [
        h.Operation(0, 1.0, 1.5, h.Request(h.OpKind.PUT, "k1", value="v1"), h.Response(2)),
        h.Operation(1, 1.2, 1.3, h.Request(h.OpKind.GET, "k1"), h.Response(2, kvs=(kv,))),
        h.Operation(
            2, 1.4, math.inf, h.Request(h.OpKind.CAS, "k1", value="v2", expected_mod_revision=2),
            error="deadline exceeded",
        ),
        h.Operation(
            3, 1.6, 1.7, h.Request(h.OpKind.LEASE_REVOKE, lease=7),
            error="etcdserver: requested lease not found", definite_failure=True,
        ),
    ]
    watch = h.WatchRecord(client=4, key="k", range_end="l", start_revision=1, prev_kv=True,
                          progress_notify=False)
    watch.responses.append(
        h.WatchResponse(received=1.6, header_revision=2,
                        events=(h.WatchEvent(h.EventType.PUT, kv, None),))
    )
    return h.History(seed=9, keys=("k1", "k2"), operations=ops, watches=[watch])


def test_round_trip_keeps_every_field() -> None:
    original = _sample()
    out = io.StringIO()
    h.dump(original, out)
    loaded = h.load(out.getvalue().splitlines())
    assert loaded == original
    assert loaded.operations[2].unknown and not loaded.operations[3].unknown


def test_an_unknown_outcome_must_stay_open_ended() -> None:
    with pytest.raises(AssertionError):
        h.Operation(0, 1.0, 2.0, h.Request(h.OpKind.PUT, "k"), error="timeout")

"""Hand-written etcd histories with known verdicts, through the harness's entry point."""

from __future__ import annotations

import math

from tests.faults.history import History, KeyValue, Operation, OpKind, Request, Response
from tests.faults.verdict import check_history

KEYS = ("a", "b", "c")


def kv(key: str, value: str, mod: int, create: int | None = None, version: int = 1,
       lease: int = 0) -> KeyValue:
    return KeyValue(key, value, mod, mod if create is None else create, version, lease)


def put(c: int, t0: float, t1: float, key: str, value: str, rev: int, lease: int = 0) -> Operation:
    return Operation(c, t0, t1, Request(OpKind.PUT, key, value=value, lease=lease), Response(rev))


def get(c: int, t0: float, t1: float, key: str, rev: int, *kvs: KeyValue,
        serializable: bool = False) -> Operation:
    return Operation(c, t0, t1, Request(OpKind.GET, key, serializable=serializable),
                     Response(rev, kvs=kvs))


def cas(c: int, t0: float, t1: float, key: str, value: str, expected: int, rev: int,
        ok: bool) -> Operation:
    req = Request(OpKind.CAS, key, value=value, expected_mod_revision=expected)
    return Operation(c, t0, t1, req, Response(rev, succeeded=ok))


def delete(c: int, t0: float, t1: float, key: str, rev: int, deleted: int) -> Operation:
    return Operation(c, t0, t1, Request(OpKind.DELETE, key), Response(rev, deleted=deleted))


def unknown(c: int, t0: float, req: Request) -> Operation:
    return Operation(c, t0, math.inf, req, error="context deadline exceeded")


def grant(c: int, t0: float, t1: float, lease: int, rev: int) -> Operation:
    return Operation(c, t0, t1, Request(OpKind.LEASE_GRANT, lease=lease), Response(rev))


def revoke(c: int, t0: float, t1: float, lease: int, rev: int) -> Operation:
    return Operation(c, t0, t1, Request(OpKind.LEASE_REVOKE, lease=lease), Response(rev))


def verdict(*ops: Operation) -> tuple[bool, str]:
    result = check_history(History(seed=7, keys=KEYS, operations=list(ops)), timeout_s=10)
    assert not result.unknown
    if result.ok:
        assert result.kind == ""
    else:
        assert result.kind == "linearizability"
        assert "seed 7" in result.explanation
    return result.ok, result.explanation


def test_a_simple_correct_history() -> None:
    ok, _ = verdict(
        put(0, 0, 1, "a", "v1", 2),
        get(1, 2, 3, "a", 2, kv("a", "v1", 2)),
        put(0, 4, 5, "a", "v2", 3),
        get(1, 6, 7, "a", 3, kv("a", "v2", 3, create=2, version=2)),
        delete(0, 8, 9, "a", 4, 1),
        delete(0, 10, 11, "a", 4, 0),  # a delete of a missing key makes no revision
        get(1, 12, 13, "a", 4),
    )
    assert ok


def test_stale_read_after_acknowledged_write() -> None:
    ok, why = verdict(
        put(0, 0, 1, "a", "v1", 2),
        put(0, 2, 3, "a", "v2", 3),
        get(1, 4, 5, "a", 2, kv("a", "v1", 2)),
    )
    assert not ok
    assert "get 'a'" in why


def test_lost_acknowledged_write() -> None:
    ok, why = verdict(
        put(0, 0, 1, "a", "v1", 2),
        put(0, 2, 3, "b", "w1", 3),
        get(1, 4, 5, "a", 3),  # revision 3 exists but a's write is gone
    )
    assert not ok
    assert "cannot be placed" in why


def test_revision_gap() -> None:
    ok, _ = verdict(
        put(0, 0, 1, "a", "v1", 2),
        put(0, 2, 3, "a", "v2", 4),  # nobody made revision 3
        get(1, 4, 5, "a", 4, kv("a", "v2", 4, create=2, version=2)),
    )
    assert not ok


def test_revision_gap_filled_by_an_unknown_write_is_fine() -> None:
    ok, _ = verdict(
        put(0, 0, 1, "a", "v1", 2),
        unknown(2, 0.5, Request(OpKind.PUT, "b", value="lost?")),
        put(0, 2, 3, "a", "v2", 4),
        get(1, 4, 5, "a", 4, kv("a", "v2", 4, create=2, version=2)),
    )
    assert ok


def test_duplicate_revision() -> None:
    ok, why = verdict(put(0, 0, 1, "a", "v1", 2), put(1, 0, 1, "b", "w1", 2))
    assert not ok
    assert "two writes both made revision 2" in why


def test_cas_succeeding_on_a_stale_expectation() -> None:
    ok, _ = verdict(
        put(0, 0, 1, "a", "v1", 2),
        put(0, 2, 3, "a", "v2", 3),
        cas(1, 4, 5, "a", "v3", 2, 4, ok=True),  # mod_revision is 3, not 2
    )
    assert not ok


def test_two_cas_on_the_same_expectation_cannot_both_win() -> None:
    ok, _ = verdict(
        put(0, 0, 1, "a", "v1", 2),
        cas(1, 2, 5, "a", "x", 2, 3, ok=True),
        cas(2, 2, 5, "a", "y", 2, 4, ok=True),
    )
    assert not ok


def test_failed_cas_returns_the_current_revision() -> None:
    ok, _ = verdict(
        put(0, 0, 1, "a", "v1", 2),
        cas(1, 2, 3, "a", "x", 0, 2, ok=False),  # exists: compare on 0 fails, no revision
        cas(1, 4, 5, "b", "y", 0, 3, ok=True),  # absent: compare on 0 holds
    )
    assert ok
    ok, _ = verdict(put(0, 0, 1, "a", "v1", 2), cas(1, 2, 3, "a", "x", 0, 3, ok=False))
    assert not ok


def test_read_of_a_value_never_written() -> None:
    ok, why = verdict(put(0, 0, 1, "a", "v1", 2), get(1, 2, 3, "a", 2, kv("a", "v9", 2)))
    assert not ok
    assert "a value nobody wrote" in why


def test_unknown_write_that_appears_later() -> None:
    ok, _ = verdict(
        unknown(0, 0, Request(OpKind.PUT, "a", value="maybe")),
        get(1, 1, 2, "a", 1),
        get(1, 3, 4, "a", 2, kv("a", "maybe", 2)),
    )
    assert ok


def test_unknown_write_seen_before_it_was_sent() -> None:
    ok, _ = verdict(
        get(1, 0, 1, "a", 2, kv("a", "maybe", 2)),
        unknown(0, 2, Request(OpKind.PUT, "a", value="maybe")),
    )
    assert not ok


def test_lease_revoke_deletes_its_keys_at_one_revision() -> None:
    ok, _ = verdict(
        grant(0, 0, 1, 5, 1),
        put(0, 2, 3, "a", "v1", 2, lease=5),
        put(0, 4, 5, "b", "w1", 3, lease=5),
        revoke(0, 6, 7, 5, 4),
        get(1, 8, 9, "a", 4),
        get(1, 10, 11, "b", 4),
    )
    assert ok
    # A read at the revoke's revision that still sees one of the keys: not atomic.
    ok, _ = verdict(
        grant(0, 0, 1, 5, 1),
        put(0, 2, 3, "a", "v1", 2, lease=5),
        put(0, 4, 5, "b", "w1", 3, lease=5),
        revoke(0, 6, 7, 5, 4),
        Operation(1, 8, 9, Request(OpKind.RANGE, "a", range_end="c"),
                  Response(4, kvs=(kv("b", "w1", 3, lease=5),))),
    )
    assert not ok


def test_revoke_of_an_unknown_lease_is_a_definite_failure() -> None:
    not_found = Operation(0, 0, 1, Request(OpKind.LEASE_REVOKE, lease=9),
                          error="etcdserver: requested lease not found", definite_failure=True)
    ok, _ = verdict(not_found, put(1, 2, 3, "a", "v1", 2))
    assert ok
    # but not when the lease had been granted
    late = Operation(0, 2, 3, Request(OpKind.LEASE_REVOKE, lease=9),
                     error="etcdserver: requested lease not found", definite_failure=True)
    ok, _ = verdict(grant(0, 0, 1, 9, 1), late)
    assert not ok


def test_serializable_read_may_be_stale_but_exact() -> None:
    ok, _ = verdict(
        put(0, 0, 1, "a", "v1", 2),
        put(0, 2, 3, "a", "v2", 3),
        get(1, 4, 5, "a", 2, kv("a", "v1", 2), serializable=True),  # an old revision, exactly
    )
    assert ok
    ok, _ = verdict(
        put(0, 0, 1, "a", "v1", 2),
        put(0, 2, 3, "a", "v2", 3),
        get(1, 4, 5, "a", 3, kv("a", "v1", 2), serializable=True),  # not revision 3's content
    )
    assert not ok


def test_serializable_read_from_the_future() -> None:
    ok, _ = verdict(
        put(0, 0, 1, "a", "v1", 2),
        get(1, 2, 3, "a", 2, kv("a", "v1", 2), serializable=True),
        put(0, 4, 5, "a", "v2", 3),
        get(1, 6, 7, "a", 3, kv("a", "v2", 3, create=2, version=2), serializable=True),
    )
    assert ok
    ok, _ = verdict(
        get(1, 0, 1, "a", 2, kv("a", "v1", 2), serializable=True),  # before it was written
        put(0, 2, 3, "a", "v1", 2),
    )
    assert not ok


def test_serializable_read_going_backwards_for_one_client() -> None:
    ok, why = verdict(
        put(0, 0, 1, "a", "v1", 2),
        put(0, 2, 3, "a", "v2", 3),
        get(1, 4, 5, "a", 3, kv("a", "v2", 3, create=2, version=2)),
        get(1, 6, 7, "a", 2, kv("a", "v1", 2), serializable=True),
    )
    assert not ok
    assert "went backwards" in why

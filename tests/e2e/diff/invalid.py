"""Requests etcd refuses (and a few borderline ones it accepts), each once per script.

Validation happens in two places in etcd, and both are covered: before proposing (empty key,
ignore_value with a value, too many txn ops, duplicate keys, size) and while applying (a
missing key for ignore_value, an unknown lease, a read at a compacted or future revision, in
which order the checks of a txn run).
"""

from __future__ import annotations

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from tests.e2e.diff.script import (
    INVALID_SORT_OPTION,
    KEYS,
    LEASE_IDS,
    MAX_LEASE_TTL,
    MAX_REQUEST_BYTES,
    MAX_TXN_OPS,
    MISSING_KEY,
    UNKNOWN_LEASE,
    CompareTarget,
    Op,
    OpKind,
    SortOrder,
    SortTarget,
)

Put = pb.PutRequest
Range = pb.RangeRequest


def _txn(*success: pb.RequestOp, failure: tuple[pb.RequestOp, ...] = (),
         compare: tuple[pb.Compare, ...] = ()) -> pb.TxnRequest:
    return pb.TxnRequest(compare=compare, success=success, failure=failure)


def _put(**fields: object) -> pb.RequestOp:
    return pb.RequestOp(request_put=Put(**fields))  # type: ignore[arg-type]


def _range(**fields: object) -> pb.RequestOp:
    return pb.RequestOp(request_range=Range(**fields))  # type: ignore[arg-type]


def _nested(t: pb.TxnRequest) -> pb.RequestOp:
    return pb.RequestOp(request_txn=t)


def _read_at(revision: int, lease: int = 0) -> pb.TxnRequest:
    """A put, then a nested txn reading at `revision`."""
    return _txn(_put(key=b"a/1", value=b"t", lease=lease),
                _nested(_txn(_range(key=b"a", revision=revision))))


def _bad_sort(order: int, target: int) -> Op:
    r = Range(key=b"a", range_end=b"\x00")
    r.sort_order, r.sort_target = order, target  # values outside the enums
    # etcd 3.5.1 sorts nothing for an unknown order and crashes (a Go panic in the request
    # goroutine) on an unknown target; later 3.5 releases reject both, as etcdpy does.
    return Op(OpKind.RANGE, r, f"invalid sort {order}/{target}", expect=INVALID_SORT_OPTION)


def invalid_ops(unknown_lease_key: bytes, nested_compare: pb.Compare) -> list[Op]:
    """Every refused request; `nested_compare` picks the branch of a nested txn whose two
    branches put the same key (which is allowed)."""
    both_branches = _txn(_put(key=b"c", value=b"then"), failure=(_put(key=b"c", value=b"else"),),
                         compare=(nested_compare,))
    puts = [
        ("empty key", Put(key=b"", value=b"v")),
        ("ignore_value with a value", Put(key=b"a", value=b"v", ignore_value=True)),
        ("ignore_lease with a lease", Put(key=b"a", lease=LEASE_IDS[0], ignore_lease=True)),
        ("ignore_value on a missing key", Put(key=MISSING_KEY, ignore_value=True)),
        ("ignore_lease on a missing key", Put(key=MISSING_KEY, ignore_lease=True)),
        ("unknown lease", Put(key=unknown_lease_key, value=b"v", lease=UNKNOWN_LEASE)),
        ("larger than max-request-bytes", Put(key=b"b", value=b"x" * (MAX_REQUEST_BYTES + 4096))),
    ]
    txns = [
        ("two puts of one key", _txn(_put(key=b"a", value=b"1"), _put(key=b"a", value=b"2"))),
        ("put inside a deleted range", _txn(failure=(
            pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"a/", range_end=b"a0")),
            _put(key=b"a/2", value=b"1"),
        ))),
        ("put in a nested txn of a key the outer one puts",
         _txn(_put(key=b"b", value=b"out"), _nested(_txn(_put(key=b"b", value=b"in"))))),
        ("one key in both branches of a nested txn",
         _txn(_nested(both_branches), failure=(_nested(both_branches),))),
        ("too many ops", _txn(*[_range(key=b"a")] * (MAX_TXN_OPS + 1))),
        ("too many compares", _txn(compare=tuple(
            pb.Compare(key=b"a", target=CompareTarget.VERSION, version=i)
            for i in range(MAX_TXN_OPS + 1)))),
        ("exactly max-txn-ops", _txn(failure=(_range(key=b"b", range_end=b"\x00"),) * MAX_TXN_OPS)),
        ("compare with an empty key",
         _txn(compare=(pb.Compare(target=CompareTarget.VERSION, version=1),))),
        ("range with an empty key inside", _txn(_range(key=b""))),
        ("ignore_value on a missing key after a put",
         _txn(_put(key=b"a/3", value=b"w"), _put(key=MISSING_KEY, ignore_value=True))),
        ("larger than max-request-bytes",
         _txn(*[_put(key=k, value=bytes([65 + i]) * 9000) for i, k in enumerate(KEYS)])),
        ("put, then a nested read at a future revision", _read_at(10**6)),
        ("put, then a nested read at revision 1 (compacted?)", _read_at(1)),
        ("unknown lease put and a future read: puts are checked first",
         _read_at(10**6, UNKNOWN_LEASE)),
    ]
    return [
        *[Op(OpKind.PUT, p, note) for note, p in puts],
        Op(OpKind.RANGE, Range(key=b"", range_end=b"z"), "empty key"),
        Op(OpKind.DELETE_RANGE, pb.DeleteRangeRequest(), "empty key"),
        _bad_sort(7, SortTarget.KEY),
        _bad_sort(SortOrder.ASCEND, 9),
        *[Op(OpKind.TXN, t, note) for note, t in txns],
        Op(OpKind.LEASE_GRANT, pb.LeaseGrantRequest(ID=LEASE_IDS[2], TTL=MAX_LEASE_TTL + 1),
           "too large TTL"),
        Op(OpKind.LEASE_GRANT, pb.LeaseGrantRequest(ID=LEASE_IDS[0], TTL=600), "existing id"),
    ]

"""Request checks done before a request is proposed, as etcd's v3rpc does them.

A request that fails here never reaches Raft. The checks and their order follow etcd 3.5's
`checkRangeRequest`, `checkPutRequest`, `checkDeleteRequest` and `checkTxnRequest`, including
the rule that no key may be written twice (or written and deleted) by one txn branch.
"""

from __future__ import annotations

from collections.abc import Sequence

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server import errors

_SORT_ORDERS = frozenset(pb.RangeRequest.SortOrder.values())
_SORT_TARGETS = frozenset(pb.RangeRequest.SortTarget.values())


def check_range(r: pb.RangeRequest) -> None:
    if not r.key:
        raise errors.EmptyKey()
    if r.sort_order not in _SORT_ORDERS or r.sort_target not in _SORT_TARGETS:
        raise errors.InvalidSortOption()


def check_put(r: pb.PutRequest) -> None:
    if not r.key:
        raise errors.EmptyKey()
    if r.ignore_value and r.value:
        raise errors.ValueProvided()
    if r.ignore_lease and r.lease:
        raise errors.LeaseProvided()


def check_delete(r: pb.DeleteRangeRequest) -> None:
    if not r.key:
        raise errors.EmptyKey()


def check_txn(r: pb.TxnRequest, max_txn_ops: int) -> None:
    if max(len(r.compare), len(r.success), len(r.failure)) > max_txn_ops:
        raise errors.TooManyOps()
    for c in r.compare:
        if not c.key:
            raise errors.EmptyKey()
    for op in (*r.success, *r.failure):
        _check_op(op, max_txn_ops)
    _check_intervals(r.success)
    _check_intervals(r.failure)


def _check_op(op: pb.RequestOp, max_txn_ops: int) -> None:
    which = op.WhichOneof("request")
    if which == "request_range":
        check_range(op.request_range)
    elif which == "request_put":
        check_put(op.request_put)
    elif which == "request_delete_range":
        check_delete(op.request_delete_range)
    elif which == "request_txn":
        check_txn(op.request_txn, max_txn_ops)


class _Deletes:
    """The key ranges a branch deletes; `covers(key)` asks whether a put would collide."""

    def __init__(self) -> None:
        self._ranges: list[tuple[bytes, bytes | None]] = []  # [start, end); None = unbounded

    def add(self, key: bytes, range_end: bytes) -> None:
        if not range_end:
            self._ranges.append((key, key + b"\x00"))
        elif range_end == b"\x00":
            self._ranges.append((key, None))
        else:
            self._ranges.append((key, range_end))

    def merge(self, other: _Deletes) -> None:
        self._ranges.extend(other._ranges)

    def covers(self, key: bytes) -> bool:
        return any(start <= key and (end is None or key < end) for start, end in self._ranges)


def _check_intervals(ops: Sequence[pb.RequestOp]) -> tuple[set[bytes], _Deletes]:
    """Puts and deletes of one branch (nested txns folded in); raises DuplicateKey when a key
    is put twice or put and deleted. The two branches of a nested txn exclude each other, so a
    key put in both of them is fine."""
    deletes = _Deletes()
    for op in ops:
        if op.WhichOneof("request") == "request_delete_range":
            d = op.request_delete_range
            deletes.add(d.key, d.range_end)

    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        puts_then, dels_then = _check_intervals(op.request_txn.success)
        puts_else, dels_else = _check_intervals(op.request_txn.failure)
        for key in puts_then:
            if key in puts or deletes.covers(key):
                raise errors.DuplicateKey()
            puts.add(key)
        for key in puts_else:
            if (key in puts and key not in puts_then) or deletes.covers(key):
                raise errors.DuplicateKey()
            puts.add(key)
        deletes.merge(dels_then)
        deletes.merge(dels_else)

    for op in ops:
        if op.WhichOneof("request") == "request_put":
            key = op.request_put.key
            if key in puts or deletes.covers(key):
                raise errors.DuplicateKey()
            puts.add(key)
    return puts, deletes

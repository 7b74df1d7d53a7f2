"""What Range, Put, DeleteRange and Txn mean over the MVCC store (etcd's `txn` package).

These functions take etcd's protobuf requests and return its responses. They run inside one
storage transaction: `apply.py` calls them with a write transaction while applying a committed
entry, and the read path calls `range_` with a read view. They raise `server.errors` on bad
requests; a Txn checks everything that can fail *before* its first write, so a failed request
leaves the store unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb
from etcdpy.server import errors

# The enums' values as the message classes carry them (plain ints): an access through
# protobuf's enum wrapper (`RangeRequest.SortOrder.NONE`) runs Python code, ~1 us a time,
# which every Range and Txn paid several times.
SortOrder = pb.RangeRequest
SortTarget = pb.RangeRequest
CompareResult = pb.Compare
CompareTarget = pb.Compare


class RangeResult(Protocol):
    kvs: Sequence[mvccpb.KeyValue]
    count: int
    rev: int


class ReadTxn(Protocol):
    """What these semantics need from a storage read view."""

    @property
    def rev(self) -> int: ...

    def range(
        self, key: bytes, range_end: bytes, *, limit: int = 0, rev: int = 0, count_only: bool = False
    ) -> RangeResult: ...


class WriteTxn(ReadTxn, Protocol):
    """A storage write transaction: every write in it shares one new main revision."""

    def put(self, key: bytes, value: bytes, lease: int) -> None: ...

    def delete_range(self, key: bytes, range_end: bytes) -> int: ...


LeaseExists = Callable[[int], bool]


# --- Range -------------------------------------------------------------------------------------

_KEY_OF: dict[int, Callable[[mvccpb.KeyValue], object]] = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


def _has_filters(r: pb.RangeRequest) -> bool:
    return bool(
        r.min_mod_revision or r.max_mod_revision or r.min_create_revision or r.max_create_revision
    )


def range_(txn: ReadTxn, r: pb.RangeRequest) -> pb.RangeResponse:
    """etcd's Range: count ignores limit and filters; sorting and filters fetch everything."""
    # etcd fetches everything only for an explicit order or a filter: with order NONE and
    # another target it sorts just the first limit+1 keys (by key) and then truncates.
    needs_all = r.sort_order != SortOrder.NONE or _has_filters(r)
    # One more than asked tells whether there are more keys (`more`).
    fetch_limit = 0 if needs_all or r.limit <= 0 else r.limit + 1
    result = txn.range(
        r.key, r.range_end, limit=fetch_limit, rev=r.revision, count_only=r.count_only
    )
    kvs = list(result.kvs)
    if r.max_mod_revision:
        kvs = [kv for kv in kvs if kv.mod_revision <= r.max_mod_revision]
    if r.min_mod_revision:
        kvs = [kv for kv in kvs if kv.mod_revision >= r.min_mod_revision]
    if r.max_create_revision:
        kvs = [kv for kv in kvs if kv.create_revision <= r.max_create_revision]
    if r.min_create_revision:
        kvs = [kv for kv in kvs if kv.create_revision >= r.min_create_revision]

    order = r.sort_order
    if r.sort_target != SortTarget.KEY and order == SortOrder.NONE:
        order = SortOrder.ASCEND
    # Keys come out of the store in ascending key order already.
    if order == SortOrder.DESCEND or (order == SortOrder.ASCEND and r.sort_target != SortTarget.KEY):
        kvs.sort(key=_KEY_OF[r.sort_target], reverse=order == SortOrder.DESCEND)

    resp = pb.RangeResponse(count=result.count)
    resp.header.revision = result.rev
    if r.limit > 0 and len(kvs) > r.limit:
        kvs = kvs[: r.limit]
        resp.more = True
    if not r.count_only:
        resp.kvs.extend(kvs)
        if r.keys_only:
            for kv in resp.kvs:
                kv.ClearField("value")
    return resp


# --- Put and DeleteRange -----------------------------------------------------------------------


def _existing(txn: ReadTxn, key: bytes) -> mvccpb.KeyValue | None:
    kvs = txn.range(key, b"").kvs
    return kvs[0] if kvs else None


def check_put(txn: ReadTxn, p: pb.PutRequest, lease_exists: LeaseExists) -> None:
    """The apply-time checks of a Put, done before any write of its request."""
    if (p.ignore_value or p.ignore_lease) and _existing(txn, p.key) is None:
        raise errors.KeyNotFound()
    if not p.ignore_lease and p.lease and not lease_exists(p.lease):
        raise errors.LeaseNotFound()


def put(txn: WriteTxn, p: pb.PutRequest, lease_exists: LeaseExists) -> pb.PutResponse:
    # A plain Put looks its lease up first (a txn checks the key first, in `_check_ops`).
    if p.lease and not lease_exists(p.lease):
        raise errors.LeaseNotFound()
    check_put(txn, p, lease_exists)
    prev = _existing(txn, p.key) if (p.prev_kv or p.ignore_value or p.ignore_lease) else None
    value = prev.value if p.ignore_value and prev is not None else p.value
    lease = prev.lease if p.ignore_lease and prev is not None else p.lease
    resp = pb.PutResponse()
    if p.prev_kv and prev is not None:
        resp.prev_kv.CopyFrom(prev)
    txn.put(p.key, value, lease)
    resp.header.revision = txn.rev
    return resp


def delete_range(txn: WriteTxn, d: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
    resp = pb.DeleteRangeResponse()
    if d.prev_kv:
        resp.prev_kvs.extend(txn.range(d.key, d.range_end).kvs)
    resp.deleted = txn.delete_range(d.key, d.range_end)
    resp.header.revision = txn.rev
    return resp


# --- Txn -------------------------------------------------------------------------------------


def _compare_value(c: pb.Compare, kv: mvccpb.KeyValue) -> int:
    """<0, 0 or >0 as the key's target is below, equal to or above the compare's constant."""
    target = c.target
    if target == CompareTarget.VALUE:
        a: object = kv.value
        b: object = c.value
    elif target == CompareTarget.VERSION:
        a, b = kv.version, c.version
    elif target == CompareTarget.CREATE:
        a, b = kv.create_revision, c.create_revision
    elif target == CompareTarget.MOD:
        a, b = kv.mod_revision, c.mod_revision
    elif target == CompareTarget.LEASE:
        a, b = kv.lease, c.lease
    else:
        return 0  # etcd's compareKV leaves an unknown target's comparison at "equal"
    return (a > b) - (a < b)  # type: ignore[operator]


def _compare_holds(c: pb.Compare, kv: mvccpb.KeyValue) -> bool:
    cmp = _compare_value(c, kv)
    result = c.result
    if result == CompareResult.EQUAL:
        return cmp == 0
    if result == CompareResult.NOT_EQUAL:
        return cmp != 0
    if result == CompareResult.GREATER:
        return cmp > 0
    if result == CompareResult.LESS:
        return cmp < 0
    return True  # etcd's compareKV holds for a result it does not know


def compare(txn: ReadTxn, c: pb.Compare) -> bool:
    """A compare holds when it holds for every key in its range; a missing key compares as
    all zeros, except that a VALUE compare on nothing is false."""
    kvs = txn.range(c.key, c.range_end).kvs
    if not kvs:
        if c.target == CompareTarget.VALUE:
            return False
        return _compare_holds(c, mvccpb.KeyValue())
    return all(_compare_holds(c, kv) for kv in kvs)


def _branch(txn: ReadTxn, t: pb.TxnRequest) -> tuple[bool, Sequence[pb.RequestOp]]:
    succeeded = all(compare(txn, c) for c in t.compare)
    return succeeded, (t.success if succeeded else t.failure)


def _check_ops(txn: ReadTxn, ops: Sequence[pb.RequestOp], lease_exists: LeaseExists) -> None:
    """Apply-time checks of the branch that will run, nested txns included, before writing."""
    for op in ops:
        which = op.WhichOneof("request")
        if which == "request_put":
            check_put(txn, op.request_put, lease_exists)
        elif which == "request_txn":
            _, nested = _branch(txn, op.request_txn)
            _check_ops(txn, nested, lease_exists)


def _check_ranges(txn: ReadTxn, ops: Sequence[pb.RequestOp]) -> None:
    """A read at a compacted or future revision fails the whole txn before its first write
    (etcd checks these after the puts of the branch)."""
    for op in ops:
        which = op.WhichOneof("request")
        if which == "request_range" and op.request_range.revision > 0:
            r = op.request_range
            txn.range(r.key, r.range_end, limit=1, rev=r.revision, count_only=True)
        elif which == "request_txn":
            _, nested = _branch(txn, op.request_txn)
            _check_ranges(txn, nested)


def is_read_only(t: pb.TxnRequest) -> bool:
    """A txn whose both branches only read never needs a new revision."""
    for op in (*t.success, *t.failure):
        which = op.WhichOneof("request")
        if which in ("request_put", "request_delete_range"):
            return False
        if which == "request_txn" and not is_read_only(op.request_txn):
            return False
    return True


def _decide(tx: ReadTxn, t: pb.TxnRequest, out: list[bool]) -> list[bool]:
    """The branch taken by `t` and by every nested txn on the taken paths, depth first."""
    succeeded, ops = _branch(tx, t)
    out.append(succeeded)
    for op in ops:
        if op.WhichOneof("request") == "request_txn":
            _decide(tx, op.request_txn, out)
    return out


def txn(tx: WriteTxn | ReadTxn, t: pb.TxnRequest, lease_exists: LeaseExists) -> pb.TxnResponse:
    """Run a Txn; reads inside it see its own earlier writes. Read-only txns take a ReadTxn.

    Like etcd, every branch (nested txns' too) is chosen before the first write, so a nested
    txn's compares see the store as it was when the txn began, not the writes before it."""
    decisions = iter(_decide(tx, t, []))
    succeeded = next(decisions)
    ops = t.success if succeeded else t.failure
    _check_ops(tx, ops, lease_exists)
    _check_ranges(tx, ops)
    return _run_branch(tx, succeeded, ops, lease_exists, decisions)


def _run_branch(
    tx: WriteTxn | ReadTxn, succeeded: bool, ops: Sequence[pb.RequestOp], lease_exists: LeaseExists,
    decisions: Iterator[bool],
) -> pb.TxnResponse:
    resp = pb.TxnResponse(succeeded=succeeded)
    for op in ops:
        which = op.WhichOneof("request")
        out = resp.responses.add()
        if which == "request_range":
            out.response_range.CopyFrom(range_(tx, op.request_range))
            # The revision the read saw: the txn's start until it first writes, then its own.
            out.response_range.header.revision = tx.rev
        elif which == "request_put":
            out.response_put.CopyFrom(put(tx, op.request_put, lease_exists))  # type: ignore[arg-type]
        elif which == "request_delete_range":
            out.response_delete_range.CopyFrom(
                delete_range(tx, op.request_delete_range)  # type: ignore[arg-type]
            )
        elif which == "request_txn":
            nested_ok = next(decisions)
            nested = op.request_txn
            nested_ops = nested.success if nested_ok else nested.failure
            out.response_txn.CopyFrom(
                _run_branch(tx, nested_ok, nested_ops, lease_exists, decisions)
            )
            # etcd leaves a nested txn's header empty (present, no revision).
            out.response_txn.header.Clear()
            out.response_txn.header.SetInParent()
    # Each inner response keeps the revision its op saw when it ran: a read before the txn's
    # first write reports the old revision, as etcd's do.
    resp.header.revision = tx.rev
    return resp

"""Request checks before proposing, as etcd 3.5's v3rpc does them."""

import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server import errors
from etcdpy.server.api import validate


def put(key: bytes, **kw: object) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, **kw))


def delete(key: bytes, range_end: bytes = b"") -> pb.RequestOp:
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, range_end=range_end))


def nested(success: list[pb.RequestOp], failure: list[pb.RequestOp] = ()) -> pb.RequestOp:  # type: ignore[assignment]
    return pb.RequestOp(request_txn=pb.TxnRequest(success=success, failure=list(failure)))


def test_empty_keys_are_refused() -> None:
    with pytest.raises(errors.EmptyKey):
        validate.check_range(pb.RangeRequest())
    with pytest.raises(errors.EmptyKey):
        validate.check_put(pb.PutRequest(value=b"v"))
    with pytest.raises(errors.EmptyKey):
        validate.check_delete(pb.DeleteRangeRequest())
    with pytest.raises(errors.EmptyKey):
        validate.check_txn(pb.TxnRequest(compare=[pb.Compare()]), 128)


def test_put_flags() -> None:
    with pytest.raises(errors.ValueProvided):
        validate.check_put(pb.PutRequest(key=b"k", value=b"v", ignore_value=True))
    with pytest.raises(errors.LeaseProvided):
        validate.check_put(pb.PutRequest(key=b"k", lease=5, ignore_lease=True))
    validate.check_put(pb.PutRequest(key=b"k", ignore_value=True, ignore_lease=True))


def test_invalid_sort_option() -> None:
    r = pb.RangeRequest(key=b"k")
    r.sort_order = 7  # type: ignore[assignment]
    with pytest.raises(errors.InvalidSortOption):
        validate.check_range(r)


def test_too_many_ops_counts_each_list_separately() -> None:
    ops = [put(b"k%d" % i) for i in range(3)]
    validate.check_txn(pb.TxnRequest(success=ops, failure=ops), 3)
    with pytest.raises(errors.TooManyOps):
        validate.check_txn(pb.TxnRequest(success=[*ops, put(b"x")]), 3)


@pytest.mark.parametrize(
    "ops",
    [
        [put(b"a"), put(b"a")],
        [put(b"a"), delete(b"a")],
        [put(b"b"), delete(b"a", b"c")],
        [put(b"zz"), delete(b"a", b"\x00")],
        [nested([put(b"a")]), put(b"a")],
        [nested([put(b"a")]), nested([put(b"a")])],
        [delete(b"a"), nested([put(b"a")])],
        [nested([delete(b"a", b"b")]), put(b"a")],
    ],
)
def test_duplicate_keys_in_one_branch(ops: list[pb.RequestOp]) -> None:
    with pytest.raises(errors.DuplicateKey):
        validate.check_txn(pb.TxnRequest(success=ops), 128)


@pytest.mark.parametrize(
    "ops",
    [
        [put(b"a"), put(b"b")],
        [put(b"c"), delete(b"a", b"c")],
        [delete(b"a"), delete(b"a")],
        [nested([put(b"a")], [put(b"a")])],  # then/else exclude each other
    ],
)
def test_allowed_combinations(ops: list[pb.RequestOp]) -> None:
    validate.check_txn(pb.TxnRequest(success=ops), 128)


def test_success_and_failure_are_checked_independently() -> None:
    validate.check_txn(pb.TxnRequest(success=[put(b"a")], failure=[put(b"a")]), 128)

"""The server-layer checkers, fed facts directly."""

from __future__ import annotations

import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb
from etcdpy.server import errors

from .server_checks import (
    Acked,
    AckedWrites,
    LinearReads,
    ServerInvariant,
    ServerViolation,
    StateAgreement,
    check_revision_steps,
)
from .server_node import NodeState


def _put(rev: int) -> pb.PutResponse:
    r = pb.PutResponse()
    r.header.revision = rev
    return r


def _delete(rev: int, deleted: int) -> pb.DeleteRangeResponse:
    r = pb.DeleteRangeResponse(deleted=deleted)
    r.header.revision = rev
    return r


def _range(rev: int, key: bytes | None = None, mod: int = 0) -> pb.RangeResponse:
    r = pb.RangeResponse()
    r.header.revision = rev
    if key is not None:
        r.kvs.append(mvccpb.KeyValue(key=key, mod_revision=mod))
    return r


def test_state_agreement_compares_members_at_the_same_index() -> None:
    a = StateAgreement()
    a.observe(1, NodeState(5, 3, 0, 0xAB, ()))
    a.observe(2, NodeState(5, 3, 0, 0xAB, ()))
    a.observe(2, NodeState(6, 4, 0, 0xCD, ()))
    with pytest.raises(ServerViolation) as e:
        a.observe(3, NodeState(5, 3, 0, 0xAC, ()))
    assert e.value.invariant is ServerInvariant.STATE_AGREEMENT
    with pytest.raises(ServerViolation):
        a.observe(3, NodeState(6, 4, 0, 0xCD, ((7, 5, 0, 1),)))


def test_revision_steps_one_per_write_none_for_failures_and_no_ops() -> None:
    results = [(1, _put(11)), (2, errors.LeaseNotFound()), (3, _delete(11, 0)),
               (4, _delete(12, 1)), (5, pb.LeaseGrantResponse(ID=9))]
    check_revision_steps(1, 10, 12, results)
    with pytest.raises(ServerViolation):  # a put that did not raise the revision
        check_revision_steps(1, 10, 10, [(1, _put(10))])
    with pytest.raises(ServerViolation):  # two revisions for one request
        check_revision_steps(1, 10, 12, [(1, _put(12))])
    with pytest.raises(ServerViolation):  # a delete of nothing that wrote
        check_revision_steps(1, 10, 11, [(1, _delete(11, 0))])
    with pytest.raises(ServerViolation):  # the batch moved more than its requests
        check_revision_steps(1, 10, 12, [(1, _put(11))])


def test_acknowledged_writes_must_be_readable_at_their_revision() -> None:
    acked = AckedWrites()
    acked.ack(Acked(4, 2, b"k", b"v"))
    acked.ack(Acked(5, 3, b"k", None))

    def good(key: bytes, rev: int) -> pb.RangeResponse:
        r = _range(rev, key, rev) if rev == 2 else _range(rev)
        if rev == 2:
            r.kvs[0].value = b"v"
        return r

    acked.check_present(1, good, compact_rev=0, current_rev=3)
    acked.check_present(1, lambda k, r: _range(r), compact_rev=2, current_rev=3)
    with pytest.raises(ServerViolation):  # the put is gone
        acked.check_present(1, lambda k, r: _range(r), compact_rev=0, current_rev=3)
    with pytest.raises(ServerViolation):  # the member is behind an acknowledged write
        acked.check_present(1, good, compact_rev=0, current_rev=2)


def test_linearizable_read_must_not_miss_an_acknowledged_write() -> None:
    acked = AckedWrites()
    acked.ack(Acked(7, 5, b"k", b"v"))
    reads = LinearReads(acked)
    reads.issue(b"r1", 1, b"k", now=0)
    reads.on_read_state(1, b"r1", 7)
    reads.serve(1, 6, lambda key: _range(4))  # not applied up to the read index: waits
    assert reads.confirmed
    reads.serve(1, 7, lambda key: _range(5, key, 5))
    assert reads.served == 1
    reads.issue(b"r2", 1, b"k", now=0)
    with pytest.raises(ServerViolation):  # a read index below an acknowledged entry
        reads.on_read_state(1, b"r2", 6)
    reads.issue(b"r3", 2, b"k", now=0)
    reads.on_read_state(2, b"r3", 9)
    with pytest.raises(ServerViolation) as e:  # served from an older revision
        reads.serve(2, 9, lambda key: _range(4, key, 3))
    assert e.value.invariant is ServerInvariant.STALE_READ

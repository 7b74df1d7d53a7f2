"""The pure parts of the concurrency recipe: key names and the ranges they query."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.api.recipes import first_created, prefix_end, waiter_key


def test_prefix_end_like_clientv3() -> None:
    assert prefix_end(b"job/") == b"job0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"  # nothing above it: every key from the start
    assert prefix_end(b"") == b"\x00"


@given(st.binary(min_size=1, max_size=8).filter(lambda p: p.strip(b"\xff")), st.binary(max_size=8))
def test_prefix_end_covers_exactly_the_prefixed_keys(prefix: bytes, tail: bytes) -> None:
    end = prefix_end(prefix)
    assert prefix <= prefix + tail < end
    # The first key past the range no longer starts with the prefix.
    assert not end.startswith(prefix)


def test_waiter_key_is_the_lease_in_lowercase_hex() -> None:
    assert waiter_key(b"job/", 0x694D805A2A5D6B0B) == b"job/694d805a2a5d6b0b"
    assert waiter_key(b"/", 255) == b"/ff"
    assert waiter_key(b"n/", -1) == b"n/-1"  # Go's %x keeps the sign of a negative id


def test_first_created_asks_for_the_oldest_key_under_the_prefix() -> None:
    request = first_created(b"boss/")
    assert (request.key, request.range_end, request.limit) == (b"boss/", b"boss0", 1)
    assert request.sort_target == pb.RangeRequest.SortTarget.CREATE
    assert request.sort_order == pb.RangeRequest.SortOrder.ASCEND

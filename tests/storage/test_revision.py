"""Revision key codec: 17 bytes big-endian, '_' separator, optional 't' mark."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etcdpy.storage.mvcc.revision import Revision, is_tombstone, rev_bytes, rev_main

revs = st.builds(Revision, st.integers(0, (1 << 63) - 1), st.integers(0, (1 << 63) - 1))


def test_layout_matches_etcd() -> None:
    b = Revision(2, 1).to_bytes()
    assert b == b"\x00" * 7 + b"\x02" + b"_" + b"\x00" * 7 + b"\x01"
    assert Revision(2, 1).to_bytes(tombstone=True) == b + b"t"
    assert rev_bytes(2, 1) == b
    assert rev_main(b) == 2


@given(revs)
def test_roundtrip(r: Revision) -> None:
    assert Revision.from_bytes(r.to_bytes()) == r
    assert Revision.from_bytes(r.to_bytes(tombstone=True)) == r
    assert is_tombstone(r.to_bytes(tombstone=True))
    assert not is_tombstone(r.to_bytes())


@given(revs, revs, st.booleans(), st.booleans())
def test_byte_order_is_revision_order(a: Revision, b: Revision, ta: bool, tb: bool) -> None:
    if a != b:
        assert (a.to_bytes(ta) < b.to_bytes(tb)) == (a < b)

"""Bucket keys preserve the byte order of user keys of any length."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdpy.storage.mvcc import key_codec
from etcdpy.storage.mvcc.key_codec import CUTOFF, bucket_key

# keys around the cutoff, built from a small alphabet so prefixes collide often
_alpha = st.sampled_from([b"\x00", b"\x01", b"\x02", b"a", b"\xff"])


@st.composite
def user_keys(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from([b"", b"a" * (CUTOFF - 2), b"a" * CUTOFF, b"a" * (CUTOFF + 3)]))
    tail = draw(st.lists(_alpha, max_size=6))
    return base[: draw(st.integers(0, len(base)))] + b"".join(tail)


def _lmdb_order(keys: list[bytes]) -> list[bytes]:
    """Order produced by sorting bucket keys, then the keys inside each bucket."""
    return sorted(set(keys), key=lambda k: (bucket_key(k), k))


@settings(max_examples=300)
@given(st.lists(user_keys(), max_size=30))
def test_bucket_order_equals_plain_sort(keys: list[bytes]) -> None:
    assert _lmdb_order(keys) == sorted(set(keys))


@given(user_keys(), user_keys())
def test_bucket_keys_monotone(a: bytes, b: bytes) -> None:
    if a < b:
        assert bucket_key(a) <= bucket_key(b)
    assert len(bucket_key(a)) <= CUTOFF + 1 < 511


def test_long_bucket_roundtrip() -> None:
    entries: list[tuple[bytes, int]] = []
    for i, k in enumerate([b"x" * 600 + b"b", b"x" * 600 + b"a", b"x" * 900]):
        key_codec.bucket_insert(entries, k, i + 1)
    assert [k for k, _ in entries] == sorted(k for k, _ in entries)
    assert key_codec.decode_bucket(key_codec.encode_bucket(entries)) == entries
    assert key_codec.bucket_find(entries, b"x" * 900) == 3
    assert key_codec.bucket_find(entries, b"x" * 601) is None

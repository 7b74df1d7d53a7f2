"""Merged key-range permissions: etcd's coverage rules for keys, ranges, prefixes, from-key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etcdpy._pb.authpb import auth_pb2 as authpb
from etcdpy.server.auth_perms import KeyInterval, PermType, RangeSet, merge_roles


def role(*perms: tuple[int, bytes, bytes]) -> authpb.Role:
    return authpb.Role(name=b"r", keyPermission=[
        authpb.Permission(permType=t, key=k, range_end=e) for t, k, e in perms])


def test_single_key_permission_covers_that_key_only() -> None:
    perms = merge_roles([role((PermType.READ, b"k1", b""))])
    assert perms.allows(PermType.READ, b"k1", b"")
    assert not perms.allows(PermType.READ, b"k2", b"")
    assert not perms.allows(PermType.READ, b"k1", b"k2")  # a range wider than the key
    assert perms.allows(PermType.READ, b"k1", b"k1\x00")  # exactly the key as a range
    assert not perms.allows(PermType.WRITE, b"k1", b"")


def test_range_covers_sub_ranges_and_keys_inside() -> None:
    perms = merge_roles([role((PermType.READWRITE, b"/a", b"/b"))])
    for kind in (PermType.READ, PermType.WRITE, PermType.READWRITE):
        assert perms.allows(kind, b"/a1", b"")
        assert perms.allows(kind, b"/a", b"/b")
        assert perms.allows(kind, b"/a5", b"/a9")
        assert not perms.allows(kind, b"/a", b"/c")
        assert not perms.allows(kind, b"/b", b"")
        assert not perms.allows(kind, b"/a", b"\x00")  # from /a to the end


def test_from_key_permission_is_unbounded() -> None:
    perms = merge_roles([role((PermType.READ, b"z", b"\x00"))])
    assert perms.allows(PermType.READ, b"z", b"\x00")
    assert perms.allows(PermType.READ, b"zzz", b"")
    assert perms.allows(PermType.READ, b"za", b"zz")
    assert not perms.allows(PermType.READ, b"y", b"\x00")


def test_adjacent_and_overlapping_ranges_merge() -> None:
    perms = merge_roles([
        role((PermType.READ, b"a", b"c")),
        role((PermType.READ, b"c", b"e"), (PermType.READ, b"d", b"g")),
    ])
    assert len(perms.read) == 1
    assert perms.allows(PermType.READ, b"a", b"g")
    assert not perms.allows(PermType.READ, b"a", b"h")
    assert len(perms.write) == 0


def test_readwrite_needs_both_kinds() -> None:
    perms = merge_roles([role((PermType.READ, b"a", b"z"), (PermType.WRITE, b"m", b"z"))])
    assert perms.allows(PermType.READWRITE, b"n", b"")
    assert not perms.allows(PermType.READWRITE, b"b", b"")


def test_empty_or_inverted_permission_grants_nothing() -> None:
    perms = merge_roles([role((PermType.READ, b"/zz", b"/a"))])
    assert not perms.allows(PermType.READ, b"/zz", b"")
    assert not perms.allows(PermType.READ, b"/b", b"")


ALPHABET = b"\x00ab"
words = st.lists(st.sampled_from(ALPHABET), max_size=2).map(bytes)
# Every word of at most two letters: a gap in a union of intervals whose bounds are such
# words starts at such a word, so checking these keys one by one is an exact model.
UNIVERSE = sorted({b""} | {bytes([a]) for a in ALPHABET}
                  | {bytes([a, b]) for a in ALPHABET for b in ALPHABET})


@given(st.lists(st.tuples(words, words), max_size=6), words, words)
def test_covers_agrees_with_a_key_by_key_model(ranges: list[tuple[bytes, bytes]],
                                               key: bytes, end: bytes) -> None:
    intervals = [KeyInterval(a, b) for a, b in ranges if a < b]
    rs = RangeSet(intervals)

    def inside(k: bytes) -> bool:
        return any(i.start <= k and (i.end is None or k < i.end) for i in intervals)

    if end == b"\x00":
        # "to the end of the key space": no bounded interval reaches that far
        assert not rs.covers(key, end)
    elif end and key < end:
        assert rs.covers(key, end) == all(inside(k) for k in UNIVERSE if key <= k < end)
    elif not end:
        assert rs.covers(key, b"") == inside(key)

"""Members and the IDs etcd derives for them.

etcd names a member by the first 8 bytes (big-endian) of SHA-1 over its sorted peer URLs
concatenated, then the cluster token, then (for `member add`) the Unix time in seconds; the
cluster ID is the same hash over the sorted member IDs as 8-byte big-endian words. Deriving
them identically makes IDs familiar and a re-bootstrap with the same flags deterministic.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def _hash_id(data: bytes) -> int:
    return struct.unpack(">Q", hashlib.sha1(data).digest()[:8])[0]


def compute_member_id(peer_urls: Iterable[str], token: str, now_s: int | None = None) -> int:
    """The ID etcd gives a member with these peer URLs in a cluster with this token."""
    data = "".join(sorted(peer_urls)).encode() + token.encode()
    if now_s is not None:
        data += str(now_s).encode()
    return _hash_id(data)


def compute_cluster_id(member_ids: Iterable[int]) -> int:
    data = b"".join(struct.pack(">Q", mid) for mid in sorted(member_ids))
    return _hash_id(data)


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member as etcd's Member message describes it."""

    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = field(default=())
    is_learner: bool = False

    def __post_init__(self) -> None:
        assert 0 < self.id < 1 << 64, "member IDs are non-zero uint64"


def parse_initial_cluster(text: str) -> dict[str, list[str]]:
    """`name1=url1,name1=url2,name2=url3` -> {name: [urls]} in first-seen order."""
    members: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r}: expected name=url in initial cluster")
        members.setdefault(name, []).append(url)
    return members


def members_from_initial_cluster(text: str, token: str) -> list[Member]:
    """The members of a new cluster, with etcd's IDs, sorted by ID as etcd lists them."""
    members = [
        Member(compute_member_id(urls, token), name, tuple(sorted(urls)))
        for name, urls in parse_initial_cluster(text).items()
    ]
    return sorted(members, key=lambda m: m.id)


def format_id(member_id: int) -> str:
    """etcd prints IDs as lower-case hex without leading zeros."""
    return f"{member_id:x}"


def voter_ids(members: Sequence[Member]) -> tuple[int, ...]:
    return tuple(sorted(m.id for m in members if not m.is_learner))

"""Membership as the node applies it: conf-change entries and published member attributes.

A conf change is applied in the same LMDB transaction as its log index (the member records
live in the state env), then the in-memory view and the transport's peer list follow. The
conf change's context carries the member (etcd's JSON in etcd; a `ConfChangeContext` here)
and the proposing request's ID, so the waiting MemberAdd/Remove/Update/Promote returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.internalpb import internal_pb2 as internalpb
from etcdpy.cluster.membership import Member
from etcdpy.raft import ConfChange, ConfChangeType
from etcdpy.storage.members import MemberRecord, Members
from etcdpy.storage.mvcc.kvstore import WriteBatch


def to_record(m: Member) -> MemberRecord:
    return MemberRecord(m.id, m.name, m.peer_urls, m.client_urls, m.is_learner)


def from_record(r: MemberRecord) -> Member:
    return Member(r.id, r.name, r.peer_urls, r.client_urls, r.is_learner)


def to_pb(m: Member) -> pb.Member:
    return pb.Member(ID=m.id, name=m.name, peerURLs=list(m.peer_urls),
                     clientURLs=list(m.client_urls), isLearner=m.is_learner)


def encode_context(member: pb.Member, request_id: int) -> bytes:
    return internalpb.ConfChangeContext(member=member, id=request_id).SerializeToString()


def decode_context(data: bytes) -> internalpb.ConfChangeContext | None:
    return internalpb.ConfChangeContext.FromString(data) if data else None


class MembershipView:
    """The members this node knows, kept equal to the state env's member records."""

    def __init__(self, members: Iterable[Member], removed: Iterable[int] = ()) -> None:
        self.members: dict[int, Member] = {m.id: m for m in members}
        self.removed: set[int] = set(removed)
        self.on_change: Callable[[dict[int, Member]], None] | None = None

    def sorted(self) -> list[Member]:
        return sorted(self.members.values(), key=lambda m: m.id)

    def voters(self) -> list[Member]:
        return [m for m in self.members.values() if not m.is_learner]

    def replace(self, members: Iterable[Member], removed: Iterable[int]) -> None:
        self.members = {m.id: m for m in members}
        self.removed = set(removed)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(dict(self.members))

    def apply_conf_change(self, change: ConfChange, batch: WriteBatch) -> int:
        """Record the change in the batch and in memory; returns the proposer's request ID
        (0 when there is none, e.g. for the bootstrap entries)."""
        ctx = decode_context(change.context)
        store = Members(batch.raw_txn, batch.dbs)
        node_id = change.node_id
        if change.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
            learner = change.type == ConfChangeType.ADD_LEARNER_NODE
            existing = self.members.get(node_id)
            if existing is not None:
                # Promotion of a learner (or a replay of a bootstrap entry): keep the rest.
                updated = Member(existing.id, existing.name, existing.peer_urls,
                                 existing.client_urls, learner)
            elif ctx is not None and node_id not in self.removed:
                m = ctx.member
                updated = Member(node_id, m.name, tuple(m.peerURLs), tuple(m.clientURLs), learner)
            else:
                return ctx.id if ctx else 0
            self.members[node_id] = updated
            store.put(to_record(updated))
        elif change.type == ConfChangeType.REMOVE_NODE:
            self.members.pop(node_id, None)
            self.removed.add(node_id)
            store.remove(node_id)
        elif change.type == ConfChangeType.UPDATE_NODE and ctx is not None:
            existing = self.members.get(node_id)
            if existing is not None:
                updated = Member(existing.id, existing.name, tuple(ctx.member.peerURLs),
                                 existing.client_urls, existing.is_learner)
                self.members[node_id] = updated
                store.put(to_record(updated))
        self._changed()
        return ctx.id if ctx else 0

    def set_attributes(self, attrs: internalpb.MemberAttributesSet, batch: WriteBatch) -> None:
        """A member published its name and client URLs (etcd's publish after start)."""
        existing = self.members.get(attrs.member_id)
        if existing is None:
            return
        updated = Member(existing.id, attrs.name, existing.peer_urls, tuple(attrs.client_urls),
                         existing.is_learner)
        self.members[attrs.member_id] = updated
        Members(batch.raw_txn, batch.dbs).put(to_record(updated))
        self._changed()

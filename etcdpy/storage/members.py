"""Cluster membership records and the cluster id, in the state environment.

Records are JSON with etcd's field names (``id``, ``peerURLs``, ``name``,
``clientURLs``, ``isLearner``) under the member id in 16-digit hex, as etcd keeps
them in its ``members`` bucket.  Removed ids are remembered in ``members_removed`` so
a removed member can never rejoin under the same id.

Use :class:`Members` on a write transaction (``WriteBatch.raw_txn``) to change
membership in the same LMDB transaction as the consistent index of the conf-change
entry, or on a read transaction to list members.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import lmdb

from . import schema

_U64 = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class MemberRecord:
    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    def to_json(self) -> bytes:
        d: dict[str, object] = {"id": self.id, "peerURLs": list(self.peer_urls)}
        if self.name:
            d["name"] = self.name
        if self.client_urls:
            d["clientURLs"] = list(self.client_urls)
        if self.is_learner:
            d["isLearner"] = True
        return json.dumps(d, separators=(",", ":")).encode()

    @staticmethod
    def from_json(b: bytes) -> MemberRecord:
        d = json.loads(b)
        return MemberRecord(
            id=int(d["id"]),
            name=str(d.get("name", "")),
            peer_urls=tuple(d.get("peerURLs") or ()),
            client_urls=tuple(d.get("clientURLs") or ()),
            is_learner=bool(d.get("isLearner", False)),
        )


def member_key(member_id: int) -> bytes:
    return b"%016x" % member_id


class Members:
    """Membership operations inside one LMDB transaction."""

    def __init__(self, txn: lmdb.Transaction, dbs: dict[bytes, lmdb._Database]) -> None:
        self._txn = txn
        self._members = dbs[schema.DB_MEMBERS]
        self._removed = dbs[schema.DB_MEMBERS_REMOVED]
        self._cluster = dbs[schema.DB_CLUSTER]

    def put(self, rec: MemberRecord) -> None:
        assert not self.is_removed(rec.id), f"member {rec.id:x} was removed"
        self._txn.put(member_key(rec.id), rec.to_json(), db=self._members)

    def remove(self, member_id: int) -> bool:
        self._txn.put(member_key(member_id), b"removed", db=self._removed)
        return bool(self._txn.delete(member_key(member_id), db=self._members))

    def get(self, member_id: int) -> MemberRecord | None:
        raw = self._txn.get(member_key(member_id), db=self._members)
        return None if raw is None else MemberRecord.from_json(raw)

    def list(self) -> list[MemberRecord]:
        return [MemberRecord.from_json(v) for _k, v in self._txn.cursor(self._members)]

    def is_removed(self, member_id: int) -> bool:
        return self._txn.get(member_key(member_id), db=self._removed) is not None

    def removed_ids(self) -> list[int]:
        return [int(k, 16) for k, _v in self._txn.cursor(self._removed)]

    def cluster_id(self) -> int:
        raw = self._txn.get(schema.CLUSTER_ID_KEY, db=self._cluster)
        return 0 if raw is None else int(_U64.unpack(raw)[0])

    def set_cluster_id(self, cluster_id: int) -> None:
        self._txn.put(schema.CLUSTER_ID_KEY, _U64.pack(cluster_id), db=self._cluster)

    def cluster_version(self) -> str:
        raw = self._txn.get(schema.CLUSTER_VERSION_KEY, db=self._cluster)
        return "" if raw is None else raw.decode()

    def set_cluster_version(self, version: str) -> None:
        self._txn.put(schema.CLUSTER_VERSION_KEY, version.encode(), db=self._cluster)

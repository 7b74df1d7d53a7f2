"""On-disk lease records (the ``lease`` DB) and their key encoding."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lmdb

from . import schema

_KEY = struct.Struct(">q")
_REC = struct.Struct(">qqq")


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    id: int
    ttl: int  # granted TTL in seconds
    remaining_ttl: int = 0  # last checkpointed remaining TTL; 0 = never checkpointed


def lease_key(lease_id: int) -> bytes:
    # big-endian int64 like etcd's lease bucket, so leases list in id order
    return _KEY.pack(lease_id)


def encode_lease(rec: LeaseRecord) -> bytes:
    return _REC.pack(rec.id, rec.ttl, rec.remaining_ttl)


def decode_lease(b: bytes) -> LeaseRecord:
    i, ttl, rem = _REC.unpack(b)
    return LeaseRecord(i, ttl, rem)


def attached_keys(txn: lmdb.Transaction, dbs: dict[bytes, lmdb._Database], lease_id: int
                  ) -> list[bytes]:
    """The user keys attached to a lease (the ``lease_keys`` DB), in key order; what a
    permission check on a lease (revoke, put with a lease) needs to look at."""
    prefix = lease_key(lease_id)
    out: list[bytes] = []
    cur = txn.cursor(dbs[schema.DB_LEASE_KEYS])
    if cur.set_range(prefix):
        for k, v in cur:
            if k[:8] != prefix:
                break
            out.append(bytes(v))
    out.sort()
    return out

"""Active alarms (NOSPACE, CORRUPT) per member, persisted in the state env.

Alarms are raised and cleared through Raft, so they are written with
``Alarms(batch.raw_txn, env.dbs)`` in the same LMDB transaction as the consistent
index of the entry that changed them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import lmdb

from . import schema

_KEY = struct.Struct(">QI")


class AlarmType(IntEnum):  # numbering of etcdserverpb.AlarmType
    NONE = 0
    NOSPACE = 1
    CORRUPT = 2


@dataclass(frozen=True, slots=True, order=True)
class AlarmMember:
    member_id: int
    alarm: AlarmType


class Alarms:
    def __init__(self, txn: lmdb.Transaction, dbs: dict[bytes, lmdb._Database]) -> None:
        self._txn = txn
        self._db = dbs[schema.DB_ALARM]

    def activate(self, member_id: int, alarm: AlarmType) -> bool:
        """Returns False if that alarm was already active for that member."""
        assert alarm != AlarmType.NONE
        return bool(self._txn.put(_KEY.pack(member_id, alarm), b"", db=self._db,
                                  overwrite=False))

    def deactivate(self, member_id: int, alarm: AlarmType) -> bool:
        return bool(self._txn.delete(_KEY.pack(member_id, alarm), db=self._db))

    def list(self) -> list[AlarmMember]:
        out = []
        for k, _v in self._txn.cursor(self._db):
            member_id, alarm = _KEY.unpack(k)
            out.append(AlarmMember(member_id, AlarmType(alarm)))
        return out

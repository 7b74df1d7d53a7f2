"""Durable state in LMDB: the Raft log (raft env) and everything applied (state env).

See ``schema.py`` for the on-disk layout and ``env.py`` for the durability policy.
"""

from .alarms import AlarmMember, Alarms, AlarmType
from .env import EnvOptions, LmdbEnv, MemberEnvs, member_dir_exists
from .errors import (
    CompactedError,
    CorruptStoreError,
    DataDirLockedError,
    FutureRevisionError,
    LeaseExistsError,
    LeaseNotFoundError,
    StorageError,
)
from .lease import Lease, LeaseTTLTooLargeError, Lessor, NotPrimaryError
from .lease_store import LeaseRecord
from .members import MemberRecord, Members
from .mvcc import (
    Event,
    EventType,
    KeyValue,
    KVStore,
    RangeResult,
    ReadView,
    Revision,
    WriteBatch,
    WriteTxn,
)
from .raft_log import LmdbRaftStorage
from .snapshot import install_state_snapshot, snapshot_consistent_index, write_state_snapshot

__all__ = [
    "AlarmMember",
    "AlarmType",
    "Alarms",
    "CompactedError",
    "CorruptStoreError",
    "DataDirLockedError",
    "EnvOptions",
    "Event",
    "EventType",
    "FutureRevisionError",
    "KVStore",
    "KeyValue",
    "Lease",
    "LeaseExistsError",
    "LeaseNotFoundError",
    "LeaseRecord",
    "LeaseTTLTooLargeError",
    "Lessor",
    "LmdbEnv",
    "LmdbRaftStorage",
    "MemberEnvs",
    "MemberRecord",
    "Members",
    "NotPrimaryError",
    "RangeResult",
    "ReadView",
    "Revision",
    "StorageError",
    "WriteBatch",
    "WriteTxn",
    "install_state_snapshot",
    "member_dir_exists",
    "snapshot_consistent_index",
    "write_state_snapshot",
]

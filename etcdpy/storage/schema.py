"""Every LMDB database name and meta key used by etcdpy, in one place.

Two environments live under ``<data-dir>/member/``:

* ``raft/``  -- the Raft log, hard state and snapshot metadata.  Every commit that
  the Raft driver asks to be durable is fsynced: this environment *is* the WAL.
* ``state/`` -- everything the applied log produces: the MVCC revision DB, the key
  index, leases, members, alarms and the meta DB that holds the applied
  ("consistent") index.  It may lag the Raft log after a crash; replaying the log
  from the stored consistent index repairs it exactly.

The names mirror etcd's bbolt buckets where one exists (``key``, ``meta``,
``lease``, ``members``, ``members_removed``, ``cluster``, ``alarm``, ``auth``,
``authUsers``, ``authRoles``), so the
revision DB can be hashed exactly like etcd's ``key`` bucket.
"""

from __future__ import annotations

from typing import Final

RAFT_ENV_DIR: Final = "raft"
STATE_ENV_DIR: Final = "state"
LOCK_FILE: Final = "etcdpy.lock"

# --- raft environment -------------------------------------------------------
DB_RAFT_LOG: Final = b"raft_log"  # u64 BE index -> encoded Entry
DB_RAFT_META: Final = b"raft_meta"  # meta key -> value
RAFT_DBS: Final = (DB_RAFT_LOG, DB_RAFT_META)

RAFT_META_HARD_STATE: Final = b"hard_state"
RAFT_META_LOG_START: Final = b"log_start"  # (index, term) of the dummy entry before the log
RAFT_META_SNAPSHOT: Final = b"snapshot_meta"
RAFT_META_SNAPSHOT_DATA: Final = b"snapshot_data"
RAFT_META_MEMBER_ID: Final = b"member_id"
RAFT_META_CLUSTER_ID: Final = b"cluster_id"

# --- state environment ------------------------------------------------------
DB_KEY: Final = b"key"  # 17/18-byte revision key -> marshalled mvccpb.KeyValue (as etcd)
DB_KINDEX_KEYS: Final = b"kindex_keys"  # order-preserving bucket key -> key id(s)
DB_KINDEX_REVS: Final = b"kindex_revs"  # key id(8) + main(8) + sub(8) -> b"t" | b""
DB_META: Final = b"meta"
DB_LEASE: Final = b"lease"  # lease id (i64 BE) -> LeaseRecord
DB_LEASE_KEYS: Final = b"lease_keys"  # lease id(8) + key id(8) -> user key
DB_MEMBERS: Final = b"members"
DB_MEMBERS_REMOVED: Final = b"members_removed"
DB_CLUSTER: Final = b"cluster"
DB_ALARM: Final = b"alarm"
DB_AUTH: Final = b"auth"  # enabled flag and auth revision
DB_AUTH_USERS: Final = b"authUsers"  # user name -> authpb.User
DB_AUTH_ROLES: Final = b"authRoles"  # role name -> authpb.Role
STATE_DBS: Final = (
    DB_KEY,
    DB_KINDEX_KEYS,
    DB_KINDEX_REVS,
    DB_META,
    DB_LEASE,
    DB_LEASE_KEYS,
    DB_MEMBERS,
    DB_MEMBERS_REMOVED,
    DB_CLUSTER,
    DB_ALARM,
    DB_AUTH,
    DB_AUTH_USERS,
    DB_AUTH_ROLES,
)

# meta DB keys (names follow etcd's schema where etcd has the same notion)
META_CONSISTENT_INDEX: Final = b"consistent_index"
META_TERM: Final = b"term"
META_CURRENT_REV: Final = b"current_rev"
META_SCHEDULED_COMPACT_REV: Final = b"scheduledCompactRev"
META_FINISHED_COMPACT_REV: Final = b"finishedCompactRev"
META_COMPACT_PROGRESS: Final = b"compact_progress"  # last index bucket key compacted
META_NEXT_KEY_ID: Final = b"next_key_id"
META_SCHEMA_VERSION: Final = b"schema_version"

CLUSTER_ID_KEY: Final = b"cluster_id"
CLUSTER_VERSION_KEY: Final = b"clusterVersion"

# auth DB keys (etcd's names)
AUTH_ENABLED_KEY: Final = b"authEnabled"
AUTH_REVISION_KEY: Final = b"authRevision"

SCHEMA_VERSION: Final = 1

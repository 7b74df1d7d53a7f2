"""etcdpy.raft: a sans-I/O Raft core in the style of etcd-io/raft's RawNode.

The core never touches disk, network, clocks or threads.  Input is `RawNode.tick()`,
`RawNode.step(message)` and the proposal methods; output is a `Ready`.

Ready loop contract.  On each Ready the application
  1. installs `snapshot`, appends `entries` and stores `hard_state` in its storage
     (fsync if `must_sync`); `messages` may be sent before or in parallel with this;
  2. sends `persisted_messages` (only once step 1 is durable);
  3. applies `committed_entries` in order, calling `apply_conf_change` for each
     CONF_CHANGE entry;
  4. calls `advance()`.
A message addressed to the node itself never appears in a Ready.

Bootstrap: a new member's storage holds its configuration, e.g.
`MemoryStorage.bootstrap(voters=[1, 2, 3])` (a snapshot at index 0 carrying the ConfState).

Configuration changes: only one may be pending (proposed and not yet applied).  A second
proposal while one is pending is turned into an empty normal entry (as etcd does), so its
proposer never sees it applied; the proposal itself is not refused.
"""

from .config import RaftConfig
from .errors import (
    Compacted,
    ConfChangeRejected,
    ConfigInvalid,
    ProposalDropped,
    RaftError,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
    StepLocalMsg,
    StepPeerNotFound,
    StorageError,
    Unavailable,
)
from .rawnode import RawNode
from .status import ProgressState, ProgressStatus, Status
from .storage import LogStorage, MemoryStorage
from .types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)

__all__ = [
    "Compacted",
    "ConfChange",
    "ConfChangeRejected",
    "ConfChangeType",
    "ConfState",
    "ConfigInvalid",
    "Entry",
    "EntryType",
    "HardState",
    "LogStorage",
    "MemoryStorage",
    "Message",
    "MessageType",
    "ProgressState",
    "ProgressStatus",
    "ProposalDropped",
    "RaftConfig",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotOutOfDate",
    "SnapshotTemporarilyUnavailable",
    "SoftState",
    "StateType",
    "Status",
    "StepLocalMsg",
    "StepPeerNotFound",
    "StorageError",
    "Unavailable",
]

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

Bootstrap: a founding member's storage holds the initial configuration both as a
snapshot at index 0 (so the node knows its peers at once) and as committed CONF_CHANGE
entries 1..n of term 1 (so that a member added later, which starts from an empty
storage, rebuilds the configuration by replaying the log), as etcd does; see
`MemoryStorage.bootstrap(voters=[1, 2, 3])`.  The application applies those entries from
the first Ready like any others.  A node campaigns only after applying them.

Additions to the agreed API (nothing was renamed or removed):
* `RawNode(config, storage, logger=None)`: an optional `Callable[[str], None]` receives
  human-readable event lines (elections, rejections, conf changes); the core never prints.
* `RawNode.propose_many(datas)`: a batch of normal entries in one append and one MsgApp
  per follower (the server's way to turn many concurrent writes into one round).
* `MemoryStorage.bootstrap(voters, learners=())`, `MemoryStorage.hard_state()`.
* `Ready.is_empty()`, `HardState.is_empty()`, `Snapshot.is_empty()`, `Entry.size()`.
* `StepLocalMsg` (step() given a local-only message type), `StorageError` base class.
* `etcdpy.raft.describe`: text renderings used by the scripted tests.

Behaviour notes:
* Our own vote and our own append acknowledgement count only after the Ready carrying
  them was persisted (they are stepped in `advance()`), so even a single-node cluster
  needs a Ready/advance round trip to elect itself and another to commit.
* `RawNode.step()` drops a forwarded proposal that the leader refuses (the proposer
  times out); `propose()` on the node itself raises ProposalDropped.
* Committed entries may be handed out in the same Ready as their `entries` (the app
  persists before it applies); `max_committed_size_per_ready` pages them.

Snapshots: a follower whose next entries were compacted gets `storage.snapshot()`.  A
follower refuses a snapshot whose ConfState does not list it, so the application must
keep that snapshot's configuration current (snapshot after applying a conf change, or at
least before compacting past it), as the interaction tests' environment does.

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

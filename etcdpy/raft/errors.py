"""Exceptions raised by the Raft core and by its storage."""


class RaftError(Exception):
    """Base of every error the core raises."""


class ProposalDropped(RaftError):
    """The proposal was not appended (no leader, transfer in progress, size limit, removed)."""


class StepPeerNotFound(RaftError):
    """A response arrived from a node that is not in the configuration."""


class StepLocalMsg(RaftError):
    """A message type that only the node itself may generate was given to step()."""


class ConfigInvalid(RaftError):
    """RaftConfig.validate() found a bad setting."""


class ConfChangeRejected(RaftError):
    """A configuration change cannot be applied to the current configuration."""


class StorageError(RaftError):
    """Base of the errors a LogStorage may raise."""


class Compacted(StorageError):
    """The requested index is below the first index still kept (it was compacted away)."""


class Unavailable(StorageError):
    """The requested index is beyond the last index in storage."""


class SnapshotTemporarilyUnavailable(StorageError):
    """The storage cannot produce a snapshot right now; the leader retries later."""


class SnapshotOutOfDate(StorageError):
    """The snapshot given is older than the one already stored."""

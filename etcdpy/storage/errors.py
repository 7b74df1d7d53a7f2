"""Domain errors raised by the storage layer (mapped to etcd codes by server/api)."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the storage package raises on purpose."""


class DataDirLockedError(StorageError):
    """Another process owns this member directory for writing."""


class CompactedError(StorageError):
    """The requested revision has been compacted (etcd: mvcc ErrCompacted)."""

    def __str__(self) -> str:
        return "mvcc: required revision has been compacted"


class FutureRevisionError(StorageError):
    """The requested revision is beyond the current one (etcd: ErrFutureRev)."""

    def __str__(self) -> str:
        return "mvcc: required revision is a future revision"


class LeaseNotFoundError(StorageError):
    """A write names a lease that does not exist."""

    def __str__(self) -> str:
        return "lease not found"


class LeaseExistsError(StorageError):
    """A grant names a lease id that is already in use."""

    def __str__(self) -> str:
        return "lease already exists"


class CorruptStoreError(StorageError):
    """On-disk data violates an invariant the code relies on."""

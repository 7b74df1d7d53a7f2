"""Opening the two LMDB environments of a member directory, and the data-dir lock.

Durability policy (why each environment is opened the way it is):

* **raft env** (``member/raft``) is the write-ahead log.  It is opened with
  ``sync=True, metasync=False``: every commit fdatasyncs the data pages before the
  meta page is written, so a power cut can lose at most the *last* commit but never
  corrupt the tree (LMDB keeps two meta pages and picks the newest valid one).
  When the Raft driver needs a Ready to be durable (``must_sync``), the writer calls
  :meth:`LmdbEnv.sync`, which flushes the meta page too.  That is the same two
  flushes a fully synchronous commit costs, while Readies that need no sync pay one.
* **state env** (``member/state``) may lag: everything in it is re-derivable by
  replaying the Raft log from the consistent index stored *inside* it.  It uses the
  same ``sync=True, metasync=False`` mode, which LMDB documents as preserving
  atomicity and consistency (never a corrupt file) but possibly undoing the last
  transaction after a power cut.  Undoing a transaction is harmless because the
  consistent index is written in the same transaction as the state it describes, so
  after such a loss the index and data roll back together and replay is exact.
  We deliberately do not use ``sync=False`` (MDB_NOSYNC): without the data flush
  before the meta write the OS may persist the meta page first, and a power cut
  then leaves a meta page pointing at garbage.
* ``kill -9`` never loses a committed LMDB transaction (the page cache survives),
  so only power loss needs the reasoning above.
* ``--unsafe-no-fsync`` (``EnvOptions.unsafe_no_fsync``, etcd's flag of the same name)
  drops all of that: ``sync=False`` (MDB_NOSYNC) and :meth:`LmdbEnv.sync` does nothing, so
  a power cut loses acknowledged writes.  It exists for benchmarks and as the control the
  fault tests must catch; ``durable`` tells the snapshot writers to skip their fsyncs too.

Map sizes: LMDB reserves address space, not disk, so the map is large from the start
(at least twice ``--quota-backend-bytes``) and :meth:`LmdbEnv.ensure_headroom` grows
it before a write transaction when it is more than three quarters used.

Locking: LMDB's own lock file coordinates readers and the single writer, but two
*processes* each believing they own the member dir would interleave Raft state.  A
``flock`` on ``member/etcdpy.lock`` prevents that; read-only opens skip it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import lmdb

from . import schema
from .errors import DataDirLockedError

GIB: Final = 1 << 30
DEFAULT_QUOTA_BYTES: Final = 2 * GIB
MIN_STATE_MAP_BYTES: Final = 8 * GIB
RAFT_MAP_BYTES: Final = 4 * GIB
GROW_THRESHOLD: Final = 0.75
MAX_READERS: Final = 512
MAX_DBS: Final = 32


class LmdbEnv:
    """One LMDB environment plus the handles of its named databases."""

    def __init__(
        self, path: Path, db_names: tuple[bytes, ...], map_size: int, readonly: bool,
        unsafe_no_fsync: bool = False,
    ) -> None:
        self.path = path
        self.readonly = readonly
        self._db_names = db_names
        # Held while a copy of the file is being taken (snapshot images, defragmentation),
        # so the environment is never closed and swapped under a copy running in a thread.
        self.copy_lock = threading.Lock()
        # False only under --unsafe-no-fsync: then nothing written for this env is fsynced
        self.durable = not unsafe_no_fsync
        if not readonly:
            path.mkdir(parents=True, exist_ok=True)
        self.dbs: dict[bytes, lmdb._Database] = {}
        self.env = self._open(map_size)

    def _open(self, map_size: int) -> lmdb.Environment:
        readonly = self.readonly
        env = lmdb.open(
            str(self.path),
            map_size=map_size,
            max_dbs=MAX_DBS,
            max_readers=MAX_READERS,
            readonly=readonly,
            sync=self.durable,
            metasync=False,
            # readahead hurts random-access workloads larger than RAM
            readahead=False,
            # one LMDB handle per process; threads share it (etcdpy is single writer)
            lock=True,
            subdir=True,
            create=not readonly,
        )
        if not readonly:
            # reader slots of processes that died (kill -9) would pin old pages and
            # make the file grow; the owner clears them when it opens
            env.reader_check()
        dbs: dict[bytes, lmdb._Database] = {}
        if readonly:
            # py-lmdb opens the handles in its own read transaction on a read-only env
            for name in self._db_names:
                dbs[name] = env.open_db(name, create=False)
        else:
            with env.begin(write=True) as txn:
                for name in self._db_names:
                    dbs[name] = env.open_db(name, txn=txn, create=True)
        # Updated in place: holders of `self.dbs` see the handles of the current file.
        self.dbs.clear()
        self.dbs.update(dbs)
        return env

    def reopen(self, swap: Callable[[], None] | None = None) -> None:
        """Close the environment, run `swap` (which may replace data.mdb), and open it again.

        Every transaction of the old handle is invalidated by the close, so the caller makes
        sure none is open (the state env is only written and read on the event loop thread).
        The environment is reopened even if `swap` fails.
        """
        map_size = self.map_size()
        self.env.close()
        try:
            if swap is not None:
                swap()
        finally:
            self.env = self._open(map_size)

    def db(self, name: bytes) -> lmdb._Database:
        return self.dbs[name]

    def begin(self, write: bool = False) -> lmdb.Transaction:
        assert not (write and self.readonly), "write transaction on a read-only env"
        try:
            return self.env.begin(write=write)
        except lmdb.MapResizedError:
            # another process (the owner) grew the map: adopt its size and retry
            self.env.set_mapsize(0)
            return self.env.begin(write=write)

    def sync(self) -> None:
        """Flush everything committed so far, meta page included, to stable storage
        (nothing under --unsafe-no-fsync: a forced mdb_env_sync would flush even then)."""
        if self.durable:
            self.env.sync(True)

    def fsync(self, fd: int) -> None:
        """fsync a file that belongs with this env's data (snapshot images), unless unsafe."""
        if self.durable:
            os.fsync(fd)

    def used_bytes(self) -> int:
        info = self.env.info()
        stat = self.env.stat()
        return int((info["last_pgno"] + 1) * stat["psize"])

    def file_bytes(self) -> int:
        """Size of data.mdb on disk (etcd's ``dbSize``)."""
        return (self.path / "data.mdb").stat().st_size

    def in_use_bytes(self) -> int:
        """Bytes of pages holding live data in every DB (etcd's ``dbSizeInUse``);
        the rest of the file is free pages LMDB reuses."""
        with self.begin() as txn:
            stats = [txn.stat(db) for db in self.dbs.values()]
        main = self.env.stat()
        pages = sum(s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"] for s in stats)
        pages += main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
        return int((pages + 2) * main["psize"])  # + the two meta pages

    def map_size(self) -> int:
        return int(self.env.info()["map_size"])

    def ensure_headroom(self, extra_bytes: int = 0) -> None:
        """Grow the map before a write when it is nearly full.

        Must be called with no transaction open in this process (LMDB requirement).
        """
        size = self.map_size()
        need = self.used_bytes() + extra_bytes
        if need > size * GROW_THRESHOLD:
            new_size = size
            # bounded: doubling from >= 1 GiB reaches any real size in few steps
            for _ in range(16):
                if need <= new_size * GROW_THRESHOLD:
                    break
                new_size *= 2
            self.env.set_mapsize(new_size)

    def entries(self, name: bytes) -> int:
        with self.begin() as txn:
            return int(txn.stat(self.dbs[name])["entries"])

    def close(self) -> None:
        self.env.close()


class DataDirLock:
    """An exclusive ``flock`` on ``member/etcdpy.lock``, held while the member runs."""

    def __init__(self, member_dir: Path) -> None:
        member_dir.mkdir(parents=True, exist_ok=True)
        self._path = member_dir / schema.LOCK_FILE
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLockedError(f"member dir {member_dir} is in use by another process") from None
        self._fd: int | None = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True, slots=True)
class EnvOptions:
    quota_backend_bytes: int = DEFAULT_QUOTA_BYTES
    raft_map_bytes: int = RAFT_MAP_BYTES
    unsafe_no_fsync: bool = False  # etcd's --unsafe-no-fsync: never fsync anything

    def state_map_bytes(self) -> int:
        # room for the quota plus copy-on-write churn and free pages
        return max(MIN_STATE_MAP_BYTES, 2 * self.quota_backend_bytes)


class MemberEnvs:
    """The raft and state environments of one ``<data-dir>/member`` directory."""

    def __init__(
        self, data_dir: str | os.PathLike[str], options: EnvOptions | None = None,
        readonly: bool = False,
    ) -> None:
        opts = options or EnvOptions()
        self.member_dir = Path(data_dir) / "member"
        self.readonly = readonly
        self._lock: DataDirLock | None = None if readonly else DataDirLock(self.member_dir)
        try:
            self.raft = LmdbEnv(
                self.member_dir / schema.RAFT_ENV_DIR, schema.RAFT_DBS,
                opts.raft_map_bytes, readonly, opts.unsafe_no_fsync,
            )
            self.state = LmdbEnv(
                self.member_dir / schema.STATE_ENV_DIR, schema.STATE_DBS,
                opts.state_map_bytes(), readonly, opts.unsafe_no_fsync,
            )
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def close(self) -> None:
        self.raft.close()
        self.state.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> MemberEnvs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def member_dir_exists(data_dir: str | os.PathLike[str]) -> bool:
    """True when the data dir already holds a member (restart rather than bootstrap)."""
    return (Path(data_dir) / "member" / schema.STATE_ENV_DIR / "data.mdb").exists()

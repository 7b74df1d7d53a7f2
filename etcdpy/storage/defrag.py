"""Whole-state maintenance on an `LmdbEnv`: the backend hash, compacted copies, defragmentation.

**Hash** (etcd's Maintenance.Hash): etcd hashes every bbolt bucket of its backend; our backend is
LMDB with a different layout, so the value is CRC-32C over each state database's name and then
every (key, value) pair in key order, skipping the meta keys that differ between members in
sync (the applied index and its term), as etcd skips them. Two etcdpy members with the same
applied history give the same value; it is *not* comparable with etcd's. (HashKV, which hashes
only the revision database in etcd's own encoding, is comparable with etcd's.)

**Defragmentation**: LMDB never shrinks its file; pages freed by compaction are reused but
the file keeps its high-water size. A compacting copy (`mdb_env_copy2` with
``MDB_CP_COMPACT``) writes only live pages, renumbered densely, from one read transaction. The
copy is then renamed over ``data.mdb`` and the environment reopened. The copy is only swapped
in if no write transaction committed since it started (`last_txn_id` is unchanged), so no
write is lost; a crash at any point leaves either the old file or the complete new one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import schema
from .env import LmdbEnv
from .mvcc.hashing import crc32c_update

# Meta keys whose values differ between members holding the same data (etcd's hash ignores
# the same two: the consistent index and the term of the entry that set it).
HASH_IGNORED_META: Final = frozenset({schema.META_CONSISTENT_INDEX, schema.META_TERM})
DEFRAG_TEMP_NAME: Final = "defrag.mdb.tmp"


@dataclass(frozen=True, slots=True)
class DefragResult:
    size_before: int  # data.mdb bytes before
    size_after: int  # data.mdb bytes after (the live pages only)

    def __post_init__(self) -> None:
        assert self.size_before >= 0 and self.size_after >= 0


def state_hash(env: LmdbEnv) -> int:
    """CRC-32C of every state database, in one read transaction (see the module docstring)."""
    h = 0
    with env.begin() as txn:
        for name in schema.STATE_DBS:
            db = env.dbs.get(name)
            if db is None:
                continue
            h = crc32c_update(h, name)
            for key, value in txn.cursor(db):
                if name == schema.DB_META and key in HASH_IGNORED_META:
                    continue
                h = crc32c_update(h, key)
                h = crc32c_update(h, value)
    return h


def last_txn_id(env: LmdbEnv) -> int:
    """The id of the last committed write transaction: changes whenever anything is written."""
    return int(env.env.info()["last_txnid"])


def compact_copy(env: LmdbEnv, dest: Path) -> int:
    """Write a compacted, consistent image of `env` to the file `dest`, fsynced; its size.

    Safe to call from a worker thread while the event loop keeps writing: LMDB copies from
    one read transaction. `env.copy_lock` keeps the environment from being swapped meanwhile.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with env.copy_lock:
            env.env.copyfd(fd, compact=True)
        env.fsync(fd)  # skipped under --unsafe-no-fsync, like every fsync of the env's data
    finally:
        os.close(fd)
    return dest.stat().st_size


def temp_copy_path(env: LmdbEnv) -> Path:
    # Beside data.mdb, so the rename that swaps it in stays within one file system.
    return env.path / DEFRAG_TEMP_NAME


def swap_in(env: LmdbEnv, image: Path) -> None:
    """Replace `env`'s file by the compacted `image` and reopen it.

    Call with no transaction of `env` open anywhere (the caller owns every reader and the
    writer: the event loop thread), and only when the image holds everything committed.
    """
    assert image.parent == env.path, "the image must be on the same file system as data.mdb"
    def replace() -> None:
        os.replace(image, env.path / "data.mdb")
        _fsync_dir(env.path)

    with env.copy_lock:
        env.reopen(replace)


def defragment(env: LmdbEnv) -> DefragResult:
    """Copy and swap in one go, holding off writers by not yielding (synchronous callers)."""
    before = env.file_bytes()
    tmp = temp_copy_path(env)
    compact_copy(env, tmp)
    swap_in(env, tmp)
    return DefragResult(before, env.file_bytes())


def discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

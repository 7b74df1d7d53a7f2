"""State snapshots: a consistent copy of the state env, and installing one.

A Raft snapshot sent to a lagging follower carries the whole applied state.  LMDB
copies a consistent image from inside one read transaction (``mdb_env_copy2`` with
compaction), so the writer keeps going while the copy is taken, and the copy holds
the consistent index of exactly the state it contains.

Installing replaces ``member/state/data.mdb`` with the received image.  The state
env must be closed first (the caller -- the server -- reopens it and rebuilds the
Lessor and watchers from it).  The new file is written beside the old one, fsynced
and renamed over it, and the directory fsynced, so a crash at any point leaves
either the old state or the new one, never a mix.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import lmdb

from . import schema
from .env import LmdbEnv

SNAPSHOT_SUFFIX = ".snap.mdb"


def write_state_snapshot(env: LmdbEnv, dest: Path) -> int:
    """Write a compacted, consistent image of ``env`` to the file ``dest``; returns its size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with env.copy_lock:  # not swapped (defragmented) while copied
            env.env.copyfd(fd, compact=True)
        env.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    return dest.stat().st_size


def snapshot_consistent_index(path: Path) -> int:
    """The applied index recorded inside a snapshot image (opened read-only, no lock)."""
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, max_dbs=64)
    try:
        meta = env.open_db(schema.DB_META, create=False)
        with env.begin() as txn:
            raw = txn.get(schema.META_CONSISTENT_INDEX, db=meta)
        return 0 if raw is None else int.from_bytes(raw, "big")
    finally:
        env.close()


def install_state_snapshot(member_dir: Path, image: Path, durable: bool = True) -> None:
    """Replace the (closed) state env of ``member_dir`` with the image file (no fsyncs when
    not ``durable``: --unsafe-no-fsync)."""
    state_dir = member_dir / schema.STATE_ENV_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / "data.mdb"
    staging = state_dir / ("incoming" + SNAPSHOT_SUFFIX)
    shutil.copyfile(image, staging)
    if durable:
        fd = os.open(staging, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(staging, target)
    # the lock file describes readers of the old file; LMDB recreates it on open
    lock = state_dir / "lock.mdb"
    if lock.exists():
        lock.unlink()
    if durable:
        dfd = os.open(state_dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def load_state_image(env: LmdbEnv, image: Path) -> None:
    """Make the open state env hold exactly the image's contents, in one write transaction.

    An alternative to `install_state_snapshot` that needs no closing and reopening: every
    database is emptied and refilled from the image inside one LMDB transaction, so a crash
    leaves the old state or the new one whole, and the objects holding `env` stay valid.
    Costs a pass over the image, which a snapshot install pays anyway.
    """
    source = lmdb.open(str(image), subdir=False, readonly=True, lock=False, max_dbs=64)
    try:
        env.ensure_headroom(2 * image.stat().st_size)
        with source.begin() as src, env.begin(write=True) as dst:
            for name, db in env.dbs.items():
                dst.drop(db, delete=False)
                try:
                    src_db = source.open_db(name, txn=src, create=False)
                except lmdb.NotFoundError:
                    continue  # a database the sender's schema did not have yet
                dst.cursor(db).putmulti(src.cursor(src_db).iternext(), append=True)
        env.sync()
    finally:
        source.close()

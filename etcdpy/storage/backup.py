"""Backup files: what Maintenance.Snapshot streams, and restoring one into a new member.

A backup file is a compacted LMDB image of the state env followed, as etcd's are, by the
SHA-256 of the image (32 bytes). etcd recognises the trailer by the file size: its bbolt pages
make the image a multiple of 512 bytes, so ``size % 512 == 32`` means "has a hash"; LMDB pages
(4 KiB) keep the same property, so the same test works here. A file copied straight out of a
data dir has no trailer and is accepted only with ``skip_hash_check``.

Restoring keeps the data (keys, revisions, leases, compaction, alarms) and replaces the
membership: the new data dir is bootstrapped as a fresh cluster first (its members, cluster
ID and Raft log come from the restore flags), then every other database is filled from the
image in one write transaction. The applied index and its term stay the fresh member's, so the
new Raft log's entries are applied from the start.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import lmdb

from . import schema
from .env import LmdbEnv
from .mvcc.hashing import crc32c_update

SHA_SIZE: Final = 32
CHUNK_BYTES: Final = 32 * 1024  # etcd's snapshot send buffer size
# Databases a restore does not copy: the membership of the old cluster.
MEMBERSHIP_DBS: Final = frozenset({schema.DB_MEMBERS, schema.DB_MEMBERS_REMOVED,
                                   schema.DB_CLUSTER})
# Meta keys that describe the member's position in its own Raft log, not the data.
MEMBER_META_KEYS: Final = frozenset({schema.META_CONSISTENT_INDEX, schema.META_TERM})
_I64: Final = struct.Struct(">q")


class BackupError(Exception):
    """A backup file is missing, truncated, or fails its hash check (etcdutl's wording)."""


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """What `etcdutl snapshot status` reports about a backup file."""

    hash: int  # CRC-32C of the databases (etcdpy's Hash, not comparable with etcd's)
    revision: int
    total_keys: int  # entries in every database, as etcd counts keys in every bucket
    total_size: int  # bytes of the image, trailer excluded

    def __post_init__(self) -> None:
        assert self.revision >= 1 and self.total_keys >= 0 and self.total_size >= 0


def has_hash_trailer(size: int) -> bool:
    return size % 512 == SHA_SIZE


def stream_chunks(image: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[bytes, int]]:
    """(blob, remaining bytes after it) for the image, then (its SHA-256, 0): etcd's framing.

    `remaining` counts the image bytes still to come, so it reaches 0 on the last image chunk
    and stays 0 on the trailer, as in etcd."""
    assert chunk_bytes > 0
    total = image.stat().st_size
    digest = hashlib.sha256()
    sent = 0
    with image.open("rb") as fh:
        while sent < total:
            blob = fh.read(min(chunk_bytes, total - sent))
            if not blob:
                raise BackupError(f"{image} shrank while being read")
            sent += len(blob)
            digest.update(blob)
            yield blob, total - sent
    yield digest.digest(), 0


def verified_image(backup: Path, dest: Path, skip_hash_check: bool) -> None:
    """Copy the image part of `backup` to `dest`, checking its SHA-256 trailer."""
    try:
        size = backup.stat().st_size
    except FileNotFoundError:
        raise BackupError(f"stat {backup}: no such file or directory") from None
    trailer = has_hash_trailer(size)
    if not trailer and not skip_hash_check:
        raise BackupError("snapshot missing hash but --skip-hash-check=false")
    image_size = size - SHA_SIZE if trailer else size
    digest = hashlib.sha256()
    with backup.open("rb") as src, dest.open("wb") as out:
        left = image_size
        while left > 0:
            blob = src.read(min(1 << 20, left))
            if not blob:
                raise BackupError(f"{backup} is truncated")
            digest.update(blob)
            out.write(blob)
            left -= len(blob)
        out.flush()
        os.fsync(out.fileno())
        expected = src.read(SHA_SIZE) if trailer else b""
    if trailer and not skip_hash_check and digest.digest() != expected:
        raise BackupError(f"expected sha256 {list(expected)}, got {list(digest.digest())}")


def _open_image(image: Path) -> lmdb.Environment:
    try:
        return lmdb.open(str(image), subdir=False, readonly=True, lock=False,
                         max_dbs=64)
    except lmdb.Error as err:
        raise BackupError(f"{image} is not an etcdpy snapshot: {err}") from None


def image_status(image: Path) -> BackupStatus:
    """Hash, revision, key count and size of an image (trailer already removed)."""
    env = _open_image(image)
    try:
        h = 0
        total = 0
        revision = 1
        with env.begin() as txn:
            for name in schema.STATE_DBS:
                try:
                    db = env.open_db(name, txn=txn, create=False)
                except lmdb.NotFoundError:
                    continue
                h = crc32c_update(h, name)
                for key, value in txn.cursor(db):
                    total += 1
                    if name == schema.DB_META:
                        if key == schema.META_CURRENT_REV:
                            revision = int(_I64.unpack(value)[0])
                        if key in MEMBER_META_KEYS:
                            continue
                    h = crc32c_update(h, key)
                    h = crc32c_update(h, value)
        return BackupStatus(h, revision, total, image.stat().st_size)
    finally:
        env.close()


def restore_state(env: LmdbEnv, image: Path) -> None:
    """Fill the freshly bootstrapped state env `env` with the data of `image`, keeping its
    membership and applied index (see the module docstring); one write transaction."""
    source = _open_image(image)
    try:
        env.ensure_headroom(2 * image.stat().st_size)
        with source.begin() as src, env.begin(write=True) as dst:
            for name, db in env.dbs.items():
                if name in MEMBERSHIP_DBS:
                    continue
                try:
                    src_db = source.open_db(name, txn=src, create=False)
                except lmdb.NotFoundError:
                    continue  # a database the image's schema did not have yet
                if name == schema.DB_META:
                    for key, value in src.cursor(src_db):
                        if key not in MEMBER_META_KEYS:
                            dst.put(key, value, db=db)
                    continue
                dst.drop(db, delete=False)
                dst.cursor(db).putmulti(src.cursor(src_db).iternext(), append=True)
        env.sync()
    finally:
        source.close()

"""Whole-backend maintenance for the Maintenance service: hash, online defragmentation and
consistent snapshot images of the state env (the storage side is `etcdpy.storage.defrag` and
`etcdpy.storage.backup`).

Defragmentation copies the live pages of the state env in a worker thread and swaps the copy
in on the event loop thread, only if nothing was written meanwhile: the loop is the only
writer and does not run during the swap, so writes are held off exactly as long as the swap
takes. Under constant writes it retries, then copies once without yielding (writes paused for
the copy, as etcd pauses them for its whole defragmentation).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Final

from etcdpy import logutil
from etcdpy.storage.backup import stream_chunks
from etcdpy.storage.defrag import (
    DefragResult,
    compact_copy,
    discard,
    last_txn_id,
    state_hash,
    swap_in,
    temp_copy_path,
)
from etcdpy.storage.env import LmdbEnv

log = logutil.get("maintenance")

# Copies taken in a worker thread before one is taken with the loop held (writes paused).
BACKGROUND_DEFRAG_ATTEMPTS: Final = 3
_image_ids = itertools.count(1)

__all__ = ["BACKGROUND_DEFRAG_ATTEMPTS", "DefragResult", "backend_hash", "defragment",
           "snapshot_chunks"]


def backend_hash(env: LmdbEnv) -> int:
    """etcdpy's Maintenance.Hash: equal on members with the same applied history, not
    comparable with etcd's (which hashes bbolt buckets)."""
    return state_hash(env)


async def defragment(env: LmdbEnv) -> DefragResult:
    """Compact `env`'s file while the member keeps serving (see the module docstring)."""
    before = env.file_bytes()
    tmp = temp_copy_path(env)
    log.info("starting defragment", path=str(env.path))
    try:
        for _ in range(BACKGROUND_DEFRAG_ATTEMPTS):
            txn = last_txn_id(env)
            await asyncio.to_thread(compact_copy, env, tmp)
            # No await from here to the swap: no write can slip in between check and swap.
            if last_txn_id(env) == txn:
                swap_in(env, tmp)
                break
        else:
            log.warning("writes continued during every background copy; defragmenting with "
                        "writes paused", attempts=BACKGROUND_DEFRAG_ATTEMPTS)
            compact_copy(env, tmp)
            swap_in(env, tmp)
    finally:
        discard(tmp)
    result = DefragResult(before, env.file_bytes())
    log.info("finished defragmenting directory", path=str(env.path), **{
        "current-db-size-bytes-diff": result.size_after - result.size_before,
        "current-db-size-bytes": result.size_after,
        "current-db-size-in-use-bytes": env.in_use_bytes()})
    return result


async def snapshot_chunks(env: LmdbEnv) -> AsyncIterator[tuple[bytes, int]]:
    """A consistent image of the state (one read transaction, taken in a worker thread while
    writes go on) as etcd's chunks: (blob, remaining image bytes), then (SHA-256, 0)."""
    image = env.path.parent / "snap" / f"client-{next(_image_ids)}.snap.tmp"
    try:
        size = await asyncio.to_thread(compact_copy, env, image)
        log.info("sending database snapshot to client", **{"total-bytes": size})
        for chunk in stream_chunks(image):
            yield chunk
        log.info("sent database snapshot to client", **{"total-bytes": size})
    finally:
        discard(image)

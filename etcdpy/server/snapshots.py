"""State snapshots between members: what a leader streams to a lagging follower, and how the
follower installs it.

The Raft snapshot carries only metadata (index, term, configuration); the state itself travels
as an image of the state env taken when the message leaves (so it may be *newer* than the
snapshot's index; its own applied index says how far it goes, and the entries up to that index
are skipped when applied, as etcd does with its backend). A received image is made durable in
`member/snap/` before Raft records the snapshot, so a crash between the two finds the image at
restart and loads it (`recover`).
"""

from __future__ import annotations

import os
from pathlib import Path

from etcdpy import logutil
from etcdpy.raft import SnapshotMetadata
from etcdpy.storage.env import LmdbEnv
from etcdpy.storage.snapshot import (
    load_state_image,
    snapshot_consistent_index,
    write_state_snapshot,
)

log = logutil.get("snapshot")

IMAGE_SUFFIX = ".snap.mdb"


class SnapshotImages:
    def __init__(self, snap_dir: Path, state_env: LmdbEnv) -> None:
        self.dir = snap_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._env = state_env

    def _path(self, meta: SnapshotMetadata) -> Path:
        return self.dir / f"{meta.term:016x}-{meta.index:016x}{IMAGE_SUFFIX}"

    def outgoing(self, to: int) -> Path:
        """A fresh image of the state for a snapshot to member `to` (one in flight each)."""
        path = self.dir / f"send-{to:016x}{IMAGE_SUFFIX}"
        write_state_snapshot(self._env, path)
        return path

    def keep_incoming(self, meta: SnapshotMetadata, received: str) -> None:
        """Make a received image durable under the snapshot's name, before Raft sees it."""
        target = self._path(meta)
        if self._env.durable:  # not under --unsafe-no-fsync
            # The receiver only flushed it to the page cache: without this a power cut after
            # the rename can leave an empty image under the name Raft is about to record.
            fd = os.open(received, os.O_RDONLY)
            try:
                self._env.fsync(fd)
            finally:
                os.close(fd)
        os.replace(received, target)
        if self._env.durable:
            _fsync_dir(self.dir)

    def install(self, meta: SnapshotMetadata) -> bool:
        """Load the image of this snapshot into the state env; False when there is none."""
        path = self._path(meta)
        if not path.exists():
            return False
        image_index = snapshot_consistent_index(path)
        log.info("applying snapshot", **{"snapshot-index": meta.index, "image-index": image_index})
        load_state_image(self._env, path)
        self.prune(keep=path)
        return True

    def recover(self, meta: SnapshotMetadata, applied_index: int) -> None:
        """At start: the state must not be behind the Raft snapshot (a crash came between
        recording the snapshot and loading its image)."""
        if meta.index <= applied_index:
            return
        if not self.install(meta):
            raise RuntimeError(
                f"the state (applied index {applied_index}) is behind the Raft snapshot at "
                f"{meta.index} and the snapshot's database {self._path(meta)} is missing"
            )

    def prune(self, keep: Path | None = None) -> None:
        for path in self.dir.glob(f"*{IMAGE_SUFFIX}"):
            if path != keep and not path.name.startswith("send-"):
                path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

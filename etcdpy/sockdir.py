"""Private directories for a member's Unix sockets (its client gRPC servers and read workers,
its peer gRPC server behind the shared peer port).

It lives under the system's temporary directory, not the data dir, because a Unix socket
path holds at most 107 bytes. A member stopped in an orderly way removes its own; one that
is killed (SIGKILL, a crash, power loss) cannot, and fault tests and benchmarks leave
thousands behind. So each directory holds a `lock` file its member keeps flock()ed for its
whole life (the kernel lets go when the process dies, in whatever PID namespace it ran),
and a member starting removes the directories whose lock it can take.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "etcdpy-"  # then the kind: etcdpy-client-..., etcdpy-peer-...
LOCK = "lock"


class SocketDir:
    """A new socket directory, held until close() (which also removes it)."""

    def __init__(self, kind: str, root: str | None = None) -> None:
        root = root or tempfile.gettempdir()
        sweep(root)
        self.path = tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-", dir=root)
        # Locked before it gets its final name: a sweeper only opens `lock`, so it never
        # sees one that is not yet held.
        staging = os.path.join(self.path, f".{LOCK}")
        self._lock_fd: int | None = os.open(staging, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        os.rename(staging, os.path.join(self.path, LOCK))

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def sweep(root: str) -> int:
    """Remove the socket directories under `root` whose member is gone (of every kind);
    how many."""
    removed = 0
    for path in Path(root).glob(f"{PREFIX}*"):
        try:
            fd = os.open(path / LOCK, os.O_RDWR)
        except OSError:
            continue  # not ours to judge: an older member's, or not a socket directory
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # held: its member is alive
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    return removed

"""LazyFS: a FUSE pass-through filesystem that forgets what was not fsynced, on command.

``kill -9`` does not test fsync: the kernel's page cache outlives the process. A power cut
does not: what was written but not yet flushed is gone. Like LazyFS (the C++ tool that
etcd's robustness tests and Jepsen use, not packaged here), this layer sits between a member
and its data dir and plays the page cache itself:

* every ``write`` and ``truncate`` of a file's *data* is kept in memory (4 KiB pages plus the
  file's size) and served back by ``read`` (and so by ``mmap``: LMDB reads its pages through a
  shared read-only mapping, which the kernel fills with FUSE reads; no ``direct_io``);
* ``fsync``/``fdatasync`` (and a write on a file opened ``O_SYNC``/``O_DSYNC``, which is how
  LMDB writes its meta page when it syncs) write that file's pending pages through to the
  backing dir; ``msync`` arrives the same way, as a write-back then an fsync;
* ``drop_unsynced()`` discards every pending page and size change: the power cut.

Namespace operations (create, mkdir, rename, unlink, link, symlink, chmod, utimens) go to
the backing dir at once and are treated as durable, with one exception: a regular file
*created* through the mount stays "new" until it or its directory is fsynced (fsync of a new
file commits its directory entry too, as ext4's journal does), and a drop deletes the new
files, wherever renames have taken them. So a file written, renamed but never fsynced is
gone after a drop, which is what an application that forgets an fsync before ``rename`` can
get; a missing directory fsync after an fsynced file's rename is not detected.

Pending state is kept per backing inode (not per path), so renames and several open handles
of one file see one state; each pending file holds its own descriptor on the backing file,
which also keeps its inode number from being reused while the state exists.

The FUSE daemon is a process of its own (``python lazyfs.py --backing B --mount M --control
S``), so the member above it can be SIGKILLed independently; it answers one-line commands on
a Unix socket (``ping``, ``stats``, ``sync``, ``drop``). The `LazyFS` class drives it:
``start()``/``stop()`` (or a ``with`` block), ``drop_unsynced()`` while nothing has a file open
(the member is dead), which also remounts so that no kernel cache can bring dropped data
back, and ``sync_all()`` (what a clean shutdown of the OS would do).

Needs ``/dev/fuse``, root (or fusermount) and libfuse 2 for ``fusepy`` (Debian ``libfuse2``;
PyPI ``fusepy``). `unavailable_reason()` says why it cannot run here. This file imports
nothing from the project, so it runs as a plain script.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGE = 4096
CONTROL_TIMEOUT_S = 30.0
MOUNT_TIMEOUT_S = 20.0
# A SIGKILLed process's descriptors are released by the kernel shortly after it is reaped
# (FUSE_RELEASE is sent asynchronously); a drop waits this long for them.
RELEASE_WAIT_S = 10.0
_SYNC_FLAGS = os.O_SYNC | os.O_DSYNC


class LazyFSError(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """None when a LazyFS can be mounted here, else why not."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if os.geteuid() != 0 and shutil.which("fusermount") is None:
        return "not root and no fusermount"
    try:
        import fuse  # noqa: F401  (fusepy: loads libfuse.so.2 when imported)
    except (ImportError, OSError) as error:
        return f"fusepy/libfuse2 not usable: {error} (PyPI fusepy, Debian libfuse2)"
    return None


# --- the page cache we play -------------------------------------------------------------


@dataclass(slots=True)
class FileState:
    """The not-yet-durable view of one backing file.

    Invariants: ``floor <= size``; the backing file's bytes at or beyond ``floor`` are not
    part of the file (a pending truncation cut them off: they read as zeros); every byte of
    ``pages`` at or beyond ``size`` is zero, so growing the file exposes zeros, as it must.
    """

    fd: int  # our own descriptor on the backing file (owned; closed when the state goes)
    size: int  # the file's size as the application sees it
    floor: int  # lowest size since the last sync; the backing file beyond it is not data
    pages: dict[int, bytearray] = field(default_factory=dict)  # page number -> PAGE bytes

    def base_page(self, index: int) -> bytearray:
        """Page `index` as the backing file has it, cut at `floor`."""
        start = index * PAGE
        if start >= self.floor:
            return bytearray(PAGE)
        data = os.pread(self.fd, PAGE, start)
        page = bytearray(data) + bytearray(PAGE - len(data))
        keep = self.floor - start
        if keep < PAGE:
            page[keep:] = bytes(PAGE - keep)
        return page

    def page(self, index: int) -> bytearray:
        page = self.pages.get(index)
        if page is None:
            page = self.base_page(index)
            self.pages[index] = page
        return page

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        out = bytearray()
        for index in range(offset // PAGE, (end - 1) // PAGE + 1):
            page = self.pages.get(index)
            if page is None:
                page = self.base_page(index)
            start = index * PAGE
            out += page[max(offset - start, 0): min(end - start, PAGE)]
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            index, within = divmod(offset + pos, PAGE)
            n = min(PAGE - within, len(data) - pos)
            self.page(index)[within: within + n] = data[pos: pos + n]
            pos += n
        self.size = max(self.size, offset + len(data))

    def truncate(self, length: int) -> None:
        if length < self.size:
            for index in [i for i in self.pages if i * PAGE >= length]:
                del self.pages[index]
            within = length % PAGE
            if within:
                page = self.page(length // PAGE)
                page[within:] = bytes(PAGE - within)
            self.floor = min(self.floor, length)
        self.size = length
        assert self.floor <= self.size

    def write_through(self) -> None:
        """Make this state the backing file's content (what fsync does)."""
        os.ftruncate(self.fd, self.floor)
        for index in sorted(self.pages):
            start = index * PAGE
            if start < self.size:
                os.pwrite(self.fd, bytes(self.pages[index][: self.size - start]), start)
        os.ftruncate(self.fd, self.size)


@dataclass(slots=True)
class Handle:
    fd: int  # a descriptor on the backing file for reads of files with no pending state
    ino: int
    sync: bool  # opened O_SYNC/O_DSYNC: every write is durable when it returns


class Overlay:
    """Pending (unsynced) file data by backing inode; all methods hold one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.states: dict[int, FileState] = {}
        # inodes of regular files created through the mount whose creation is not durable yet
        self.created: set[int] = set()
        self.synced_bytes = 0
        self.dropped_files = 0

    def state(self, ino: int, fd: int) -> FileState:
        st = self.states.get(ino)
        if st is None:
            size = os.fstat(fd).st_size
            st = FileState(fd=os.dup(fd), size=size, floor=size)
            self.states[ino] = st
        return st

    def size(self, ino: int) -> int | None:
        st = self.states.get(ino)
        return None if st is None else st.size

    def sync(self, ino: int) -> None:
        self.created.discard(ino)  # fsync of a new file makes its name durable as well
        st = self.states.pop(ino, None)
        if st is None:
            return
        try:
            st.write_through()
            self.synced_bytes += sum(len(p) for p in st.pages.values())
        finally:
            os.close(st.fd)

    def forget(self, ino: int) -> None:
        """The file is gone (last link removed): its pending data goes with it."""
        self.created.discard(ino)
        st = self.states.pop(ino, None)
        if st is not None:
            os.close(st.fd)

    def sync_all(self) -> int:
        inos = list(self.states)
        for ino in inos:
            self.sync(ino)
        self.created.clear()
        return len(inos)

    def drop_all(self) -> int:
        n = len(self.states)
        for st in self.states.values():
            os.close(st.fd)
        self.states.clear()
        self.dropped_files += n
        return n

    def pending_bytes(self) -> int:
        return sum(len(p) for st in self.states.values() for p in st.pages.values())


# --- the FUSE operations ------------------------------------------------------------------


def _operations_class() -> type:
    """Built on demand so that importing this module needs no libfuse (tests that only use
    `FileState`, and `unavailable_reason`, work without it)."""
    import fuse

    class LazyOperations(fuse.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self, root: str) -> None:
            self.root = root
            self.overlay = Overlay()
            self.handles: dict[int, Handle] = {}
            self._next_fh = 1
            self._released = threading.Condition(self.overlay.lock)

        def _full(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        # metadata ------------------------------------------------------------------------
        def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
            st = os.lstat(self._full(path))
            attrs = {k: getattr(st, k) for k in (
                "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino",
                "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blocks")}
            attrs["st_atime"] = attrs.pop("st_atime_ns")
            attrs["st_mtime"] = attrs.pop("st_mtime_ns")
            attrs["st_ctime"] = attrs.pop("st_ctime_ns")
            with self.overlay.lock:
                size = self.overlay.size(st.st_ino)
            if size is not None:
                attrs["st_size"] = size
                attrs["st_blocks"] = (size + 511) // 512
            return attrs

        def access(self, path: str, amode: int) -> None:
            if not os.access(self._full(path), amode):
                raise fuse.FuseOSError(errno.EACCES)

        def chmod(self, path: str, mode: int) -> None:
            os.chmod(self._full(path), mode)

        def chown(self, path: str, uid: int, gid: int) -> None:
            os.lchown(self._full(path), uid, gid)

        def utimens(self, path: str, times: Any = None) -> None:
            if times is None:
                os.utime(self._full(path), follow_symlinks=False)
            else:
                os.utime(self._full(path), ns=times, follow_symlinks=False)

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", *os.listdir(self._full(path))]

        def readlink(self, path: str) -> str:
            return os.readlink(self._full(path))

        def statfs(self, path: str) -> dict[str, int]:
            sv = os.statvfs(self._full(path))
            return {k: getattr(sv, k) for k in (
                "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax")}

        # namespace (durable at once) -------------------------------------------------------
        def mkdir(self, path: str, mode: int) -> None:
            os.mkdir(self._full(path), mode)

        def rmdir(self, path: str) -> None:
            os.rmdir(self._full(path))

        def mknod(self, path: str, mode: int, dev: int) -> None:
            os.mknod(self._full(path), mode, dev)

        def symlink(self, target: str, source: str) -> None:
            os.symlink(source, self._full(target))

        def link(self, target: str, source: str) -> None:
            os.link(self._full(source), self._full(target))

        def _losing_last_link(self, full: str) -> None:
            """`full` is about to be unlinked or replaced: if that is its last name and no
            handle has it open, its pending data has nowhere to go."""
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                return
            if st.st_nlink <= 1 and not any(h.ino == st.st_ino for h in self.handles.values()):
                self.overlay.forget(st.st_ino)

        def unlink(self, path: str) -> None:
            full = self._full(path)
            with self.overlay.lock:
                self._losing_last_link(full)
                os.unlink(full)

        def rename(self, old: str, new: str) -> None:
            with self.overlay.lock:
                src, dst = self._full(old), self._full(new)
                with contextlib.suppress(FileNotFoundError):
                    if os.lstat(src).st_ino != os.lstat(dst).st_ino:
                        self._losing_last_link(dst)
                os.rename(src, dst)

        # data ------------------------------------------------------------------------------
        def _open(self, full: str, flags: int, mode: int | None) -> int:
            extra = os.O_CREAT | (flags & os.O_EXCL) if mode is not None else 0
            with self.overlay.lock:
                new = mode is not None and not os.path.lexists(full)
                try:
                    fd = os.open(full, os.O_RDWR | extra, 0o600 if mode is None else mode)
                except PermissionError:
                    fd = os.open(full, os.O_RDONLY)
                fh = self._next_fh
                self._next_fh += 1
                ino = os.fstat(fd).st_ino
                if new:
                    self.overlay.created.add(ino)
                self.handles[fh] = Handle(fd, ino, bool(flags & _SYNC_FLAGS))
                if flags & os.O_TRUNC:
                    self.overlay.state(ino, fd).truncate(0)
            return fh

        def open(self, path: str, fi: Any) -> int:
            fi.fh = self._open(self._full(path), fi.flags, None)
            return 0

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            fi.fh = self._open(self._full(path), fi.flags, mode)
            return 0

        def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
            with self.overlay.lock:
                h = self.handles[fi.fh]
                st = self.overlay.states.get(h.ino)
                if st is not None:
                    return st.read(offset, size)
            return os.pread(h.fd, size, offset)

        def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
            with self.overlay.lock:
                h = self.handles[fi.fh]
                self.overlay.state(h.ino, h.fd).write(offset, data)
                if h.sync:
                    self.overlay.sync(h.ino)
            return len(data)

        def truncate(self, path: str, length: int, fi: Any = None) -> None:
            with self.overlay.lock:
                if fi is not None and fi.fh in self.handles:
                    h = self.handles[fi.fh]
                    self.overlay.state(h.ino, h.fd).truncate(length)
                    return
                fd = os.open(self._full(path), os.O_RDWR)
                try:
                    self.overlay.state(os.fstat(fd).st_ino, fd).truncate(length)
                finally:
                    os.close(fd)

        def fsync(self, path: str, datasync: int, fi: Any) -> None:
            with self.overlay.lock:
                self.overlay.sync(self.handles[fi.fh].ino)

        def fsyncdir(self, path: str, datasync: int, fi: Any) -> None:
            """The directory's entries are durable now: its new files are no longer new."""
            with self.overlay.lock, os.scandir(self._full(path)) as entries:
                for entry in entries:
                    self.overlay.created.discard(entry.inode())

        def flush(self, path: str, fi: Any) -> None:
            return None  # close(2) promises nothing about durability

        def release(self, path: str, fi: Any) -> None:
            with self.overlay.lock:
                h = self.handles.pop(fi.fh, None)
                if h is not None:
                    try:
                        if os.fstat(h.fd).st_nlink == 0 and not any(
                                o.ino == h.ino for o in self.handles.values()):
                            self.overlay.forget(h.ino)  # unlinked while open, now closed
                    finally:
                        os.close(h.fd)
                self._released.notify_all()

        def _remove_new_files(self) -> int:
            """Delete, under whatever names they have now, the files whose creation was never
            made durable (the tree is a member's data dir: small enough to walk)."""
            if not self.overlay.created:
                return 0
            removed = 0
            for top, _dirs, files in os.walk(self.root):
                for name in files:
                    full = os.path.join(top, name)
                    with contextlib.suppress(FileNotFoundError):
                        if os.lstat(full).st_ino in self.overlay.created:
                            os.unlink(full)
                            removed += 1
            self.overlay.created.clear()
            return removed

        # control ---------------------------------------------------------------------------
        def command(self, line: str) -> dict[str, Any]:
            cmd = line.strip()
            with self.overlay.lock:
                if cmd == "ping":
                    return {"ok": True}
                if cmd == "stats":
                    return {"ok": True, "open": len(self.handles),
                            "pending_files": len(self.overlay.states),
                            "new_files": len(self.overlay.created),
                            "pending_bytes": self.overlay.pending_bytes(),
                            "dropped_files": self.overlay.dropped_files}
                if cmd == "sync":
                    return {"ok": True, "synced_files": self.overlay.sync_all()}
                if cmd == "drop":
                    deadline = time.monotonic() + RELEASE_WAIT_S
                    while self.handles and time.monotonic() < deadline:
                        self._released.wait(0.05)
                    if self.handles:
                        return {"ok": False, "error": f"{len(self.handles)} files still open: "
                                "drop only while nothing uses the mount"}
                    pending = self.overlay.pending_bytes()
                    vanished = self._remove_new_files()
                    return {"ok": True, "dropped_files": self.overlay.drop_all(),
                            "dropped_bytes": pending, "vanished_files": vanished}
            return {"ok": False, "error": f"unknown command {cmd!r}"}

    return LazyOperations


def _serve_control(ops: Any, control: str) -> socketserver.UnixStreamServer:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline(1024).decode(errors="replace")
            try:
                reply = ops.command(line)
            except Exception as error:  # report, keep serving: the test wants to know
                reply = {"ok": False, "error": repr(error)}
            self.wfile.write((json.dumps(reply) + "\n").encode())

    with contextlib.suppress(FileNotFoundError):
        os.unlink(control)
    server = socketserver.UnixStreamServer(control, Handler)
    threading.Thread(target=server.serve_forever, name="lazyfs-control", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FUSE layer that drops unsynced writes")
    parser.add_argument("--backing", required=True)
    parser.add_argument("--mount", required=True)
    parser.add_argument("--control", required=True, help="Unix socket for commands")
    args = parser.parse_args(argv)
    import fuse

    ops = _operations_class()(os.path.realpath(args.backing))
    server = _serve_control(ops, args.control)
    try:
        # Default kernel caching rules: page cache dropped at each open (no kernel_cache),
        # no attribute caching, so sizes always come from the overlay. No direct_io: LMDB
        # maps its files, and mmap needs the page cache.
        fuse.FUSE(ops, args.mount, raw_fi=True, foreground=True, nothreads=False,
                  attr_timeout=0, entry_timeout=0, negative_timeout=0, big_writes=True,
                  max_write=131072, fsname="lazyfs", subtype="lazyfs")
    finally:
        server.shutdown()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.control)
    return 0


# --- the controller the tests use -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DropResult:
    files: int  # files that had unsynced data or size changes
    bytes: int  # pending page bytes thrown away
    vanished: int = 0  # files whose creation was never made durable, now deleted


class LazyFS:
    """Mount `backing` at `mount` through a LazyFS daemon process.

    `start()` returns once the mount answers; `stop(flush=True)` writes pending data through
    first (an orderly shutdown), `stop(flush=False)` does not (the data is lost);
    `drop_unsynced()` is the power cut: call it while nothing has a file open (the member is
    dead); the filesystem is mounted again, clean, when it returns.
    """

    def __init__(self, backing: Path, mount: Path, control: Path | None = None,
                 log_path: Path | None = None) -> None:
        self.backing = Path(backing)
        self.mount = Path(mount)
        self.control = Path(control) if control else self.mount.parent / (
            f".{self.mount.name}.lazyfs.sock")
        self.log_path = log_path or self.mount.parent / f"{self.mount.name}.lazyfs.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.drops = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mount.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(self.mount):
            raise LazyFSError(f"{self.mount} is already a mount point")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--backing", str(self.backing),
             "--mount", str(self.mount), "--control", str(self.control)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LazyFSError(f"lazyfs exited with {self.proc.returncode}:\n{self._log()}")
            if os.path.ismount(self.mount) and self.control.exists():
                with contextlib.suppress(OSError):
                    self.command("ping")
                    return
            time.sleep(0.05)
        self._kill()
        raise LazyFSError(f"lazyfs did not mount {self.mount} in {MOUNT_TIMEOUT_S}s")

    def command(self, cmd: str) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(CONTROL_TIMEOUT_S)
            s.connect(str(self.control))
            s.sendall(cmd.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        reply: dict[str, Any] = json.loads(data)
        if not reply.get("ok"):
            raise LazyFSError(f"lazyfs {cmd}: {reply.get('error')}")
        return reply

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def sync_all(self) -> None:
        self.command("sync")

    def drop_unsynced(self) -> DropResult:
        reply = self.command("drop")
        self.drops += 1
        # Remount: whatever the kernel may still cache of the old contents goes with the old
        # mount, so the next reader sees exactly the backing dir.
        self.stop(flush=False)
        self.start()
        return DropResult(files=int(reply["dropped_files"]), bytes=int(reply["dropped_bytes"]),
                          vanished=int(reply["vanished_files"]))

    def stop(self, flush: bool = True) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if flush:
                self.command("sync")
            # SIGTERM rather than umount: libfuse then leaves its loop and detaches the mount
            # itself, and closing /dev/fuse ends the session even where another mount
            # namespace holds a copy of the mount (a process started with `ip netns exec`
            # after this mount has one); an umount here would leave the daemon serving them.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=MOUNT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._kill()
        self._unmount()  # a daemon that died leaves a dead mount ("transport not connected")
        self.proc = None

    def _unmount(self) -> None:
        if not os.path.ismount(self.mount) and not _dead_mount(self.mount):
            return
        for argv in (["umount", str(self.mount)], ["fusermount", "-u", str(self.mount)],
                     ["umount", "-l", str(self.mount)]):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                done = subprocess.run(argv, capture_output=True, timeout=MOUNT_TIMEOUT_S)
                if done.returncode == 0:
                    return

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=MOUNT_TIMEOUT_S)

    def _log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def __enter__(self) -> LazyFS:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(flush=False)


def _dead_mount(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ENOTCONN
    return False


@contextlib.contextmanager
def lazyfs(backing: Path, mount: Path) -> Iterator[LazyFS]:
    fs = LazyFS(backing, mount)
    fs.start()
    try:
        yield fs
    finally:
        fs.stop(flush=False)


if __name__ == "__main__":
    sys.exit(main())

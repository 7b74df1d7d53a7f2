"""The port front in a child process (`RelayMode.PROCESS`).

Why a process: relaying costs Python work per chunk, and in the server's process that work
competes for the event loop and the GIL with everything else the member does. A child that
only accepts and relays uses the machine's other core instead.

Protocol between parent and child: the parent binds the listening socket (so bind errors and
port 0 behave as in-process) and passes it to the child with a SOCK_SEQPACKET control socket.
The parent may send the child small messages on it (the port front gets none; read workers
get the member's status).
The child accepts, relays gRPC connections to the Unix socket itself, and sends every other
connection back over the control socket as one message: the bytes it already read, plus the
connection's file descriptor (SCM_RIGHTS). The parent serves those with its HTTP handler.
The child exits when the control socket reaches end of file, i.e. when the parent closes it
or dies, so it never outlives its server.

Run as `python -m etcdpy.netshare.front --listen-fd N --control-fd M --unix PATH ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from etcdpy import allocator, eventloop, gctuning, logutil

from .accept import Acceptor, RelayMode

log = logutil.get("netshare")

MAX_PREFIX = 64  # the sniffed bytes are at most the 24-byte HTTP/2 preface
MAX_MESSAGE = 256  # a message from the parent to the child (FrontProcess.send)
SEND_RETRIES = 100  # a full control socket is waited on this many times 10 ms, then dropped


# --- child side ---


async def serve_front_child(
    listen_fd: int, control_fd: int, unix_paths: Sequence[str], relay: RelayMode,
    max_connections: int,
    sniff_timeout_s: float, on_message: Callable[[bytes], None] | None = None,
) -> None:
    """The child's accept loop: relay HTTP/2 connections to `unix_paths` (in turn), pass every
    other one back to the parent; return when the control socket reaches end of file (parent
    gone).

    Read workers (`etcdpy.worker`) run this next to their own gRPC server, with `unix_paths`
    naming that server instead of the member's, and get the parent's messages (FrontProcess.
    send) in `on_message`."""
    loop = asyncio.get_running_loop()
    control = socket.socket(fileno=control_fd)
    control.setblocking(False)
    parent_gone = loop.create_future()

    def on_control_readable() -> None:
        # A message from the parent, or end of file (or an error): the parent is gone, stop.
        for _ in range(64):  # bounded work per wake-up; the reader fires again if more wait
            try:
                message = control.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                if not parent_gone.done():
                    parent_gone.set_result(None)
                return
            if on_message is not None:
                on_message(message)

    loop.add_reader(control.fileno(), on_control_readable)

    async def hand_back(conn: socket.socket, prefix: bytes) -> None:
        try:
            for _ in range(SEND_RETRIES):
                try:
                    socket.send_fds(control, [prefix], [conn.fileno()])
                    return
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            log.warning("dropped an HTTP connection: the server is not taking them")
        finally:
            conn.close()  # the parent holds its own descriptor now

    acceptor = None
    if listen_fd >= 0:  # else (a read worker whose gRPC server binds the port) control only
        listener = socket.socket(fileno=listen_fd)
        listener.setblocking(False)
        acceptor = Acceptor(listener, unix_paths, relay, hand_back, max_connections,
                            sniff_timeout_s)
        acceptor.start()
    try:
        await parent_gone
    finally:
        loop.remove_reader(control.fileno())
        if acceptor is not None:
            await acceptor.stop()


def add_child_arguments(ap: argparse.ArgumentParser) -> None:
    """The command-line arguments FrontProcess gives every child program."""
    ap.add_argument("--listen-fd", type=int, required=True)
    ap.add_argument("--control-fd", type=int, required=True)
    ap.add_argument("--unix", required=True, action="append")  # once per gRPC server
    ap.add_argument("--relay", type=int, default=int(RelayMode.ASYNCIO))
    ap.add_argument("--max-connections", type=int, default=1024)
    ap.add_argument("--sniff-timeout", type=float, default=10.0)
    ap.add_argument("--log-level", default="warn")


async def _child_main(args: argparse.Namespace) -> None:
    gctuning.freeze_after_startup()
    await serve_front_child(args.listen_fd, args.control_fd, args.unix, RelayMode(args.relay),
                            args.max_connections, args.sniff_timeout)


def main(argv: list[str] | None = None) -> None:
    allocator.tune()
    gctuning.tune()
    ap = argparse.ArgumentParser(prog="etcdpy.netshare.front")
    add_child_arguments(ap)
    args = ap.parse_args(argv)
    logutil.setup(args.log_level)
    # The parent decides when we stop (by closing the control socket); a terminal's Ctrl-C
    # reaches the whole process group, and the parent's orderly shutdown should win.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    eventloop.run(_child_main(args))


# --- parent side ---


@dataclass(frozen=True, slots=True)
class ChildProgram:
    """Which program a FrontProcess runs: a module taking `add_child_arguments`'s arguments
    (and `args` after them), and what the logs call it."""

    module: str = "etcdpy.netshare.front"
    args: tuple[str, ...] = ()
    name: str = "port front process"


class FrontProcess:
    """Runs and supervises the child; calls `on_other(sock, prefix)` for handed-back sockets.

    `unix_paths` is where the child relays gRPC connections, in turn (the member's sockets
    for the port front, the worker's own for a read worker). Without a `listener` the child accepts
    nothing and only talks on the control socket (a read worker whose gRPC server binds the
    client port itself)."""

    def __init__(
        self,
        listener: socket.socket | None,
        unix_paths: Sequence[str],
        relay: RelayMode,
        on_other: Callable[[socket.socket, bytes], Awaitable[None]],
        max_connections: int,
        sniff_timeout_s: float,
        program: ChildProgram | None = None,
        on_message: Callable[[bytes], None] | None = None,
    ) -> None:
        assert relay in (RelayMode.ASYNCIO, RelayMode.SPLICE)
        self._program = program or ChildProgram()
        # called with each message the child sends without a connection (a read worker's
        # requests); answers go back with send()
        self._on_message = on_message
        self._listener = listener
        self._unix_paths = tuple(unix_paths)
        self._relay = relay
        self._on_other = on_other
        self._max_connections = max_connections
        self._sniff_timeout_s = sniff_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_connections)
        self._stopping = False

    def start(self) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable, "-m", self._program.module,
                    "--listen-fd", str(-1 if self._listener is None else self._listener.fileno()),
                    "--control-fd", str(child_end.fileno()),
                    *(arg for path in self._unix_paths for arg in ("--unix", path)),
                    "--relay", str(int(self._relay)),
                    "--max-connections", str(self._max_connections),
                    "--sniff-timeout", str(self._sniff_timeout_s),
                    "--log-level", _log_level(),
                    *self._program.args,
                ],
                pass_fds=(child_end.fileno(),) if self._listener is None else (
                    self._listener.fileno(), child_end.fileno()),
                env=_child_env(),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        parent_end.setblocking(False)
        self._control = parent_end
        asyncio.get_running_loop().add_reader(parent_end.fileno(), self._on_control)

    @property
    def pid(self) -> int | None:
        """The running child's process id (None between a death and its restart)."""
        return self._proc.pid if self._proc is not None else None

    async def stop(self) -> None:
        self._stopping = True
        loop = asyncio.get_running_loop()
        if self._control is not None:
            loop.remove_reader(self._control.fileno())
            self._control.close()  # the child sees end of file and exits
            self._control = None
        if self._proc is not None:
            proc = self._proc
            try:
                await asyncio.to_thread(proc.wait, 5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5.0)
            self._proc = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    def send(self, message: bytes) -> bool:
        """Send the child one small message (its `on_message` gets it); False if there is no
        child right now or its socket is full (the message is dropped, not queued)."""
        assert 0 < len(message) <= MAX_MESSAGE
        if self._control is None:
            return False
        try:
            self._control.send(message)
        except OSError:  # full (BlockingIOError) or the child just died
            return False
        return True

    def _on_control(self) -> None:
        control = self._control
        assert control is not None
        for _ in range(64):  # bounded work per wake-up; the reader fires again if more wait
            try:
                prefix, fds, _flags, _addr = socket.recv_fds(control, MAX_PREFIX, 1)
            except BlockingIOError:
                return
            except OSError as exc:
                self._child_lost(str(exc))
                return
            if not prefix and not fds:
                self._child_lost("control socket closed")
                return
            if not fds and self._on_message is not None:
                self._on_message(prefix)
            for fd in fds:
                conn = socket.socket(fileno=fd)
                conn.setblocking(False)
                if self._slots.locked():
                    conn.close()  # over the bound: refuse rather than queue without limit
                    continue
                task = asyncio.create_task(self._serve(conn, prefix), name="netshare-http")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket, prefix: bytes) -> None:
        async with self._slots:
            await self._on_other(conn, prefix)

    def _child_lost(self, why: str) -> None:
        if self._stopping or self._control is None:
            return
        asyncio.get_running_loop().remove_reader(self._control.fileno())
        log.error(f"{self._program.name} exited; restarting it", reason=why)
        self._control.close()
        self._control = None
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()
            self._proc = None
        # At most one restart a second, so a child that dies at start cannot spin.
        asyncio.get_running_loop().call_later(1.0, self._restart)

    def _restart(self) -> None:
        if not self._stopping and self._control is None:
            self.start()


def _log_level() -> str:
    """The parent's --log-level, for the child (whose lines join the parent's stderr)."""
    level = logging.getLogger("etcdpy").getEffectiveLevel()
    return next((name for name, value in logutil.LEVELS.items() if value == level), "warn")


def _child_env() -> dict[str, str]:
    """The child must import this very etcdpy, wherever it was imported from."""
    import etcdpy

    top = os.path.dirname(os.path.dirname(os.path.abspath(etcdpy.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (top, env.get("PYTHONPATH", "")) if p)
    return env


if __name__ == "__main__":
    main()

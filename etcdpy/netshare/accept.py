"""The accept loop shared by the in-process front and the front process: accept, sniff, route.

Invariant: at most `max_connections` connections are being handled at a time; the loop waits
for a slot before accepting, so a flood of clients queues in the kernel's backlog instead of
exhausting threads or file descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from enum import IntEnum

from etcdpy import logutil

from .relay import SpliceRelay, relay_asyncio

log = logutil.get("netshare")

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Called with a connection that is not HTTP/2 and the bytes already read from it; owns the
# socket from then on.
OtherHandler = Callable[[socket.socket, bytes], Awaitable[None]]


class RelayMode(IntEnum):
    ASYNCIO = 0  # relay on this process's event loop (asyncio protocols)
    SPLICE = 1  # relay with os.splice in two threads per connection, off the GIL
    PROCESS = 2  # a child process accepts and relays; HTTP/1.1 sockets are passed back


class Acceptor:
    def __init__(
        self,
        listener: socket.socket,
        unix_paths: Sequence[str],
        relay: RelayMode,
        on_other: OtherHandler,
        max_connections: int,
        sniff_timeout_s: float,
    ) -> None:
        assert relay in (RelayMode.ASYNCIO, RelayMode.SPLICE), "a process relays in one of these"
        self._listener = listener
        assert unix_paths, "somewhere to relay gRPC to"
        # gRPC connections are spread over these, one after another: each is a gRPC server of
        # its own (see etcdpy.server.api.grpc_server.ClientServers for why there are several).
        self._unix_paths = tuple(unix_paths)
        self._relayed = 0
        self._relay = relay
        self._on_other = on_other
        self._sniff_timeout_s = sniff_timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._relays: dict[SpliceRelay, threading.Thread] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._accept_loop(), name="netshare-accept")

    async def stop(self) -> None:
        """Stop accepting, end every open connection and wait for their tasks and threads."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for relay in list(self._relays):
            relay.shutdown()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        threads = list(self._relays.values())
        if threads:
            await asyncio.to_thread(_join_all, threads, 5.0)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            try:
                conn, _addr = await loop.sock_accept(self._listener)
            except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                self._slots.release()
                log.warning("accept failed", error=str(exc))
                await asyncio.sleep(0.1)
                continue
            except BaseException:
                self._slots.release()
                raise
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.create_task(self._handle(conn), name="netshare-conn")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, conn: socket.socket) -> None:
        owned_elsewhere = False
        try:
            prefix = await asyncio.wait_for(_sniff(conn), self._sniff_timeout_s)
            if not prefix:
                return
            if prefix == HTTP2_PREFACE:
                unix_path = self._unix_paths[self._relayed % len(self._unix_paths)]
                self._relayed += 1
                if self._relay is RelayMode.SPLICE:
                    owned_elsewhere = True
                    await self._splice(conn, unix_path, prefix)
                else:
                    await relay_asyncio(conn, unix_path, prefix)
            else:
                owned_elsewhere = True
                await self._on_other(conn, prefix)
        except (TimeoutError, OSError):
            pass
        finally:
            if not owned_elsewhere:
                conn.close()
            self._slots.release()

    async def _splice(self, conn: socket.socket, unix_path: str, prefix: bytes) -> None:
        relay = SpliceRelay(conn, unix_path, prefix)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def run() -> None:
            try:
                relay.run()
            finally:
                with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                    loop.call_soon_threadsafe(_set_done, done)

        thread = threading.Thread(target=run, daemon=True, name="netshare-splice")
        self._relays[relay] = thread
        try:
            thread.start()
            await asyncio.shield(done)
        finally:
            relay.shutdown()
            if done.done():
                self._relays.pop(relay, None)


async def _sniff(conn: socket.socket) -> bytes:
    """Read until the bytes are the HTTP/2 preface or cannot become it; b"" on a silent EOF."""
    loop = asyncio.get_running_loop()
    got = b""
    while len(got) < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(got):
        data = await loop.sock_recv(conn, len(HTTP2_PREFACE) - len(got))
        if not data:
            return got if got and not HTTP2_PREFACE.startswith(got) else b""
        got += data
    return got


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    for t in threads:
        t.join(timeout)

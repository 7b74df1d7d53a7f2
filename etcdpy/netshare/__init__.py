"""One TCP port for gRPC and HTTP/1.1, the way etcd shares 2379 and 2380 (its cmux).

grpcio cannot adopt a socket that Python accepted, so the front accepts every connection
itself, reads the first bytes and decides:

* the HTTP/2 client preface (`PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`, sent first by every gRPC
  client) -> relay the whole connection, those bytes included, to a grpc.aio server that
  listens on a Unix socket (`relay.py`);
* anything else -> an HTTP/1.1 server of our own (`http1.py`) calling an `HttpHandler`.

Invariant: at most `max_connections` connections are open through the front at a time; the
accept loop waits for a slot, so a flood of clients queues in the kernel's backlog instead of
exhausting threads or file descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field
from enum import IntEnum

from etcdpy import logutil

from .http1 import Http1Limits, HttpHandler, HttpRequest, HttpResponse, serve_http1
from .relay import SpliceRelay, relay_asyncio

__all__ = [
    "HTTP2_PREFACE",
    "Http1Limits",
    "HttpHandler",
    "HttpRequest",
    "HttpResponse",
    "RelayMode",
    "SharedPort",
    "SharedPortOptions",
]

log = logutil.get("netshare")

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class RelayMode(IntEnum):
    ASYNCIO = 0  # copy through asyncio streams on the event loop
    SPLICE = 1  # copy with os.splice in two threads per connection, off the GIL


@dataclass(frozen=True, slots=True)
class SharedPortOptions:
    relay: RelayMode = RelayMode.SPLICE
    max_connections: int = 1024
    sniff_timeout_s: float = 10.0  # a client that sends nothing this long is disconnected
    backlog: int = 1024
    http: Http1Limits = field(default_factory=Http1Limits)

    def __post_init__(self) -> None:
        assert self.max_connections > 0 and self.sniff_timeout_s > 0


class SharedPort:
    """Accepts on host:port; gRPC goes to `grpc_unix_path`, HTTP/1.1 to `http_handler`."""

    def __init__(
        self,
        host: str,
        port: int,
        grpc_unix_path: str,
        http_handler: HttpHandler,
        options: SharedPortOptions | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._unix_path = grpc_unix_path
        self._handler = http_handler
        self._opts = options or SharedPortOptions()
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(self._opts.max_connections)
        self._tasks: set[asyncio.Task[None]] = set()
        self._relays: dict[SpliceRelay, threading.Thread] = {}

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        assert self._listener is not None, "start() first"
        return int(self._listener.getsockname()[1])

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(self._opts.backlog)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._accept_task = asyncio.create_task(self._accept_loop(), name="netshare-accept")

    async def stop(self) -> None:
        """Stop accepting, end every open connection and wait for their tasks and threads."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
        if self._listener is not None:
            self._listener.close()
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
        assert self._listener is not None
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
        handed_to_thread = False
        try:
            prefix = await asyncio.wait_for(self._sniff(conn), self._opts.sniff_timeout_s)
            if not prefix:
                return
            if prefix == HTTP2_PREFACE:
                if self._opts.relay is RelayMode.SPLICE:
                    handed_to_thread = True
                    await self._splice(conn, prefix)
                else:
                    await relay_asyncio(conn, self._unix_path, prefix)
            else:
                reader, writer = await asyncio.open_connection(sock=conn)
                await serve_http1(reader, writer, prefix, self._handler, self._opts.http)
        except (TimeoutError, OSError):
            pass
        finally:
            if not handed_to_thread:
                conn.close()
            self._slots.release()

    async def _sniff(self, conn: socket.socket) -> bytes:
        """Read until the bytes are the HTTP/2 preface or cannot become it; b"" on EOF."""
        loop = asyncio.get_running_loop()
        got = b""
        while len(got) < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(got):
            data = await loop.sock_recv(conn, len(HTTP2_PREFACE) - len(got))
            if not data:
                return got if got and not HTTP2_PREFACE.startswith(got) else b""
            got += data
        return got

    async def _splice(self, conn: socket.socket, prefix: bytes) -> None:
        relay = SpliceRelay(conn, self._unix_path, prefix)
        done = asyncio.get_running_loop().create_future()

        def run() -> None:
            try:
                relay.run()
            finally:
                with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                    done.get_loop().call_soon_threadsafe(_set_done, done)

        thread = threading.Thread(target=run, daemon=True, name="netshare-splice")
        self._relays[relay] = thread
        try:
            thread.start()
            await asyncio.shield(done)
        finally:
            relay.shutdown()
            if done.done():
                self._relays.pop(relay, None)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    for t in threads:
        t.join(timeout)

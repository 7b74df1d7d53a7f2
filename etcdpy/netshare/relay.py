"""Byte relays between an accepted TCP connection and the gRPC server's Unix socket.

Two ways, chosen per port (see `RelayMode`):

* `relay_asyncio`: asyncio protocols writing each chunk to the other side from the read
  callback. No threads, but every chunk costs the event loop a callback and two system calls,
  on the same loop that runs the servicers.
* `SpliceRelay`: two OS threads per connection moving bytes with `os.splice` through a pipe.
  The bytes never enter Python and the threads hold no GIL while blocked in the kernel, so the
  event loop does no work per chunk. Costs two threads per connection, which is why the port
  front bounds the number of connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from typing import cast

CHUNK = 64 * 1024


async def relay_asyncio(conn: socket.socket, unix_path: str, prefix: bytes) -> None:
    """Copy both directions until both connections are closed.

    Built on asyncio protocols rather than streams: a chunk read from one side is written to
    the other inside the read callback, with no coroutine, future or buffer copy per chunk.
    Backpressure: when one side's write buffer fills, reading from the other side pauses.
    """
    loop = asyncio.get_running_loop()
    client = _RelayProtocol(loop)
    upstream = _RelayProtocol(loop)
    client.other, upstream.other = upstream, client
    up_transport, _ = await loop.create_unix_connection(lambda: upstream, unix_path)
    up_transport.write(prefix)
    try:
        await loop.connect_accepted_socket(lambda: client, sock=conn)
    except BaseException:
        up_transport.close()
        raise
    if upstream.closed.done():  # the server hung up before the client was attached
        client.close()
    try:
        await asyncio.gather(client.closed, upstream.closed)
    finally:
        client.close()
        upstream.close()


class _RelayProtocol(asyncio.Protocol):
    """One side of a relayed connection; `other` is the opposite side."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.other: _RelayProtocol | None = None
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.reached_eof = False  # this side's peer ended its direction (sent a FIN)
        # Bytes for this side that arrived before it was attached (the gRPC server speaks
        # first, before the client socket is handed to the loop); bounded by one read.
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's transport (uvloop's are not asyncio.Transport subclasses)
        self.transport = cast(asyncio.Transport, transport)
        if self.pending:
            self.transport.write(b"".join(self.pending))
            self.pending.clear()
            other = self.other
            if other is not None and other.transport is not None:
                other.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        other = self.other
        assert other is not None
        if other.transport is None:
            other.pending.append(data)
            assert self.transport is not None
            self.transport.pause_reading()  # until the other side exists, read no more
            return
        other.transport.write(data)

    def eof_received(self) -> bool:
        self.reached_eof = True
        other = self.other
        assert other is not None
        if other.reached_eof:
            # Both directions have ended: nothing will arrive on either side again, and a
            # half-closed pair left open is never closed by asyncio (two sockets leaked per
            # connection a client ended with a FIN). Closing ours closes the other.
            return False
        if other.transport is not None and other.transport.can_write_eof():
            other.transport.write_eof()
            return True  # keep our side open: the other direction may still be flowing
        return False

    def pause_writing(self) -> None:
        # Our outgoing buffer is full: stop reading what would be written to it.
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.other is not None:
            self.other.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class SpliceRelay:
    """One relayed connection: two threads, one per direction. `close()` ends both."""

    def __init__(self, client: socket.socket, unix_path: str, prefix: bytes) -> None:
        self._client = client
        self._upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._unix_path = unix_path
        self._prefix = prefix
        self._done = threading.Event()
        self._closed = False
        self._lock = threading.Lock()

    def run(self) -> None:
        """Blocking: connect upstream, relay until both directions end. Run in a thread."""
        try:
            self._client.setblocking(True)
            self._upstream.connect(self._unix_path)
            self._upstream.sendall(self._prefix)
        except OSError:
            self.close()
            self._done.set()
            return
        back = threading.Thread(
            target=self._copy, args=(self._upstream, self._client), daemon=True,
            name="netshare-splice",
        )
        back.start()
        self._copy(self._client, self._upstream)
        back.join()
        self.close()
        self._done.set()

    @staticmethod
    def _copy(src: socket.socket, dst: socket.socket) -> None:
        rfd, wfd = os.pipe()
        try:
            src_fd, dst_fd = src.fileno(), dst.fileno()
            while True:
                n = os.splice(src_fd, wfd, CHUNK)
                if n == 0:
                    break
                while n:  # everything in the pipe must reach dst before reading more
                    n -= os.splice(rfd, dst_fd, n)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            # Reset or closed under us: make sure the other direction ends too.
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        finally:
            os.close(rfd)
            os.close(wfd)

    def shutdown(self) -> None:
        """Wake both threads (they see end of stream); safe from any thread."""
        for s in (self._client, self._upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._client.close()
        self._upstream.close()

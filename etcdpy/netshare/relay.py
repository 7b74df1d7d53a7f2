"""Byte relays between an accepted TCP connection and the gRPC server's Unix socket.

Two ways, chosen per port (see `RelayMode`):

* `relay_asyncio`: two coroutines copying through asyncio streams. Simple, no threads, but
  every chunk costs the event loop a read and a write callback, on the same loop that runs
  the servicers.
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

CHUNK = 64 * 1024


async def relay_asyncio(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    unix_path: str,
    prefix: bytes,
) -> None:
    """Copy both directions until both have ended; closes both connections."""
    up_reader, up_writer = await asyncio.open_unix_connection(unix_path)
    try:
        up_writer.write(prefix)
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
    finally:
        for w in (up_writer, writer):
            w.close()
        for w in (up_writer, writer):
            with contextlib.suppress(Exception):
                await w.wait_closed()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await src.read(CHUNK)
            if not data:
                break
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        # One side went away: end the other direction too so the relay finishes.
        dst.close()


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

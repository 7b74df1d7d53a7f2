"""One TCP port for gRPC and HTTP/1.1, the way etcd shares 2379 and 2380 (its cmux).

grpcio cannot adopt a socket that Python accepted, so the front accepts every connection
itself, reads the first bytes and decides:

* the HTTP/2 client preface (`PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`, sent first by every gRPC
  client) -> relay the whole connection, those bytes included, to a grpc.aio server that
  listens on a Unix socket (`relay.py`);
* anything else -> an HTTP/1.1 server of our own (`http1.py`, on h11) calling an
  `HttpHandler`.

Where the relaying happens is `SharedPortOptions.relay` (`RelayMode`): on this event loop, in
splice threads, or in a child process (`front.py`) that passes HTTP/1.1 sockets back.
`scripts/bench_netshare.py` measures what each costs gRPC.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from .accept import HTTP2_PREFACE, Acceptor, RelayMode
from .front import FrontProcess
from .http1 import Http1Limits, HttpHandler, HttpRequest, HttpResponse, serve_http1

__all__ = [
    "HTTP2_PREFACE",
    "Http1Limits",
    "HttpHandler",
    "HttpRequest",
    "HttpResponse",
    "ListenError",
    "RelayMode",
    "SharedPort",
    "SharedPortOptions",
]


@dataclass(frozen=True, slots=True)
class SharedPortOptions:
    relay: RelayMode = RelayMode.ASYNCIO  # see scripts/bench_netshare.py; PROCESS offloads
    # With PROCESS: how the child relays (ASYNCIO or SPLICE). SPLICE by default: in the child
    # the splice threads compete for the GIL with nothing else, and the bytes never enter
    # Python (scripts/bench_client_port.py: server CPU per linearizable Range 1.02x a gRPC-only
    # port, whole group 1.15x; an asyncio child 1.05x and 1.21x). ETCDPY_PROCESS_RELAY
    # overrides it where the options are built without saying (as app.py builds them).
    process_relay: RelayMode = field(default_factory=lambda: RelayMode[
        os.environ.get("ETCDPY_PROCESS_RELAY", "SPLICE")])
    max_connections: int = 1024
    sniff_timeout_s: float = 10.0  # a client that sends nothing this long is disconnected
    backlog: int = 1024
    http: Http1Limits = field(default_factory=Http1Limits)

    def __post_init__(self) -> None:
        assert self.max_connections > 0 and self.sniff_timeout_s > 0
        assert self.process_relay in (RelayMode.ASYNCIO, RelayMode.SPLICE)


class ListenError(OSError):
    """A port that cannot be bound, in the words etcd's Go listener uses."""

    @classmethod
    def of(cls, host: str, port: int, error: OSError) -> ListenError:
        reason = os.strerror(error.errno) if error.errno else str(error)
        return cls(f"listen tcp {_go_address(host, port)}: bind: "
                   f"{reason[:1].lower()}{reason[1:]}")

    @classmethod
    def probing(cls, host: str, port: int) -> ListenError:
        """Why another listener (gRPC's, which reports no errno) could not bind host:port:
        a plain bind of the same address gets the kernel's answer."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                return cls.of(host, port, error)
        # freed since gRPC tried
        return cls(f"listen tcp {_go_address(host, port)}: bind: the address could not be bound")


def _go_address(host: str, port: int) -> str:
    """host:port as Go's net package prints it (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SharedPort:
    """Accepts on host:port; gRPC goes to `grpc_unix_path` (or, given several, to each in
    turn, a connection at a time), HTTP/1.1 to `http_handler`."""

    def __init__(
        self,
        host: str,
        port: int,
        grpc_unix_path: str | Sequence[str],
        http_handler: HttpHandler,
        options: SharedPortOptions | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._unix_paths = ((grpc_unix_path,) if isinstance(grpc_unix_path, str)
                            else tuple(grpc_unix_path))
        self._handler = http_handler
        self._opts = options or SharedPortOptions()
        self._listener: socket.socket | None = None
        self._acceptor: Acceptor | None = None
        self._front: FrontProcess | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        assert self._listener is not None, "start() first"
        return int(self._listener.getsockname()[1])

    @property
    def listener(self) -> socket.socket:
        """The bound listening socket (read workers accept on it too, see etcdpy.worker)."""
        assert self._listener is not None, "start() first"
        return self._listener

    async def serve_other(self, conn: socket.socket, prefix: bytes) -> None:
        """Serve a non-HTTP/2 connection another process accepted on this port."""
        await self._serve_http(conn, prefix)

    def bind(self) -> None:
        """Take the address without listening yet: a member binds its client ports before it
        starts, so that a port in use stops it at once, as etcd's does, while connections are
        still refused until it serves. Raises ListenError (Go's words) when it cannot."""
        if self._listener is not None:
            return
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
        except OSError as error:
            listener.close()
            raise ListenError.of(self._host, self._port, error) from error
        self._listener = listener

    async def start(self) -> None:
        """Bind (unless bind() did) and serve; raises OSError when the address cannot be
        bound or listened on."""
        self.bind()
        listener = self.listener
        try:
            listener.listen(self._opts.backlog)
            listener.setblocking(False)
        except OSError:
            listener.close()
            self._listener = None
            raise
        opts = self._opts
        if opts.relay is RelayMode.PROCESS:
            self._front = FrontProcess(
                listener, self._unix_paths, opts.process_relay, self._serve_http,
                opts.max_connections, opts.sniff_timeout_s,
            )
            self._front.start()
        else:
            self._acceptor = Acceptor(
                listener, self._unix_paths, opts.relay, self._serve_http, opts.max_connections,
                opts.sniff_timeout_s,
            )
            self._acceptor.start()

    async def stop(self) -> None:
        """Stop accepting, end every open connection, wait for tasks, threads and processes."""
        if self._acceptor is not None:
            await self._acceptor.stop()
            self._acceptor = None
        if self._front is not None:
            await self._front.stop()
            self._front = None
        if self._listener is not None:
            self._listener.close()

    async def _serve_http(self, conn: socket.socket, prefix: bytes) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
        except BaseException:
            conn.close()
            raise
        await serve_http1(reader, writer, prefix, self._handler, self._opts.http)

"""A small HTTP/1.1 server over asyncio streams, built on h11 (sans-I/O HTTP/1.1).

Only what etcd's HTTP endpoints need: requests with bodies of bounded size, keep-alive,
responses with a fixed body or a streamed (chunked) one, and protocol upgrades (101) that hand
the connection to whoever accepted them (the peer transport's message streams, see
`etcdpy.peer.stream`). h11 does the parsing and framing,
so this module only moves bytes and calls the handler. h11 was chosen over aiohttp because it
is one small pure-Python dependency and its events map one to one onto what is done here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import h11

from etcdpy import logutil

log = logutil.get("netshare")

READ_CHUNK = 64 * 1024
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str  # upper case, e.g. "GET"
    target: str  # as sent: path plus optional query
    headers: tuple[tuple[str, str], ...]  # names lower case, in arrival order
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    # A bytes body is sent with Content-Length; an async iterator is sent chunked, for
    # long-lived streams such as the gateway's watch.
    body: bytes | AsyncIterator[bytes] = field(default=b"")
    # With status 101 (and nothing else): the protocol the connection switches to.
    upgrade: UpgradeHandler | None = None

    def __post_init__(self) -> None:
        assert (self.status == 101) == (self.upgrade is not None), "101 goes with an upgrade"

    @staticmethod
    def text(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
        return HttpResponse(
            status,
            (
                ("Content-Type", "text/plain; charset=utf-8"),
                ("X-Content-Type-Options", "nosniff"),
                *headers,
            ),
            text.encode(),
        )


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]
# Takes over a connection after a 101 answer: its streams, and the bytes that arrived after the
# request (already read, so not in the reader). The connection is closed when it returns.
UpgradeHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Http1Limits:
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 4 * 1024 * 1024
    idle_timeout_s: float = 120.0  # a keep-alive connection with no request is closed then


class _BodyTooLarge(Exception):
    pass


async def serve_http1(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    prefix: bytes,
    handler: HttpHandler,
    limits: Http1Limits,
) -> None:
    """Serve requests on one connection until either side closes it.

    `prefix` holds the bytes the port front already read while deciding what protocol the
    connection speaks; they are the start of the first request.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
    conn.receive_data(prefix)
    try:
        while True:
            try:
                request = await _read_request(conn, reader, limits)
            except _BodyTooLarge:
                await _send(conn, writer, HttpResponse.text(413, "request body too large\n"))
                return
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint
                    await _send(conn, writer, HttpResponse.text(status, f"{status} bad request\n"))
                return
            if request is None:
                return
            try:
                response = await handler(request)
            except Exception:  # a handler bug must answer 500, not kill the connection loop
                log.error("http handler failed", exc_info=True, path=request.path)
                response = HttpResponse.text(500, "internal server error\n")
            if response.upgrade is not None:
                await _switch(conn, reader, writer, response)
                return
            await _send(conn, writer, response, reader)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (ConnectionError, TimeoutError, h11.LocalProtocolError):
        return
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader, limits: Http1Limits
) -> HttpRequest | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            timeout = limits.idle_timeout_s
            data = await asyncio.wait_for(reader.read(READ_CHUNK), timeout)
            conn.receive_data(data)  # b"" tells h11 the peer closed
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limits.max_body_bytes:
                raise _BodyTooLarge
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None, "h11 ends a message only after its head"
            return HttpRequest(
                method=head.method.decode("ascii"),
                target=head.target.decode("ascii", "replace"),
                headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers),
                body=bytes(body),
            )
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _stream(
    conn: h11.Connection, writer: asyncio.StreamWriter, body: AsyncIterator[bytes],
    reader: asyncio.StreamReader | None,
) -> None:
    """Send a streamed body, and stop it as soon as the client goes away: a stream that
    rarely produces (a watch on a quiet key) must not outlive its client."""

    async def pump() -> None:
        async for chunk in body:
            if chunk:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()  # backpressure: a slow reader slows the stream

    pumping = asyncio.ensure_future(pump())
    try:
        while reader is not None:
            listening = asyncio.ensure_future(reader.read(READ_CHUNK))
            done, _ = await asyncio.wait({pumping, listening},
                                         return_when=asyncio.FIRST_COMPLETED)
            if pumping in done:
                listening.cancel()
                break
            if not listening.result():
                raise ConnectionResetError("client closed the connection during a stream")
            # Bytes sent while we stream (nothing a client should send): ignored.
        await pumping
    finally:
        if not pumping.done():
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def _switch(conn: h11.Connection, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter, resp: HttpResponse) -> None:
    """Answer 101 and hand the connection over (h11 allows it only for a request that asked
    to upgrade; any other gets a 400 instead)."""
    assert resp.upgrade is not None
    if conn.their_state is not h11.MIGHT_SWITCH_PROTOCOL:
        await _send(conn, writer, HttpResponse.text(400, "no upgrade was asked for\n"))
        return
    writer.write(conn.send(h11.InformationalResponse(
        status_code=101, headers=list(resp.headers), reason=_REASONS[101])))
    await writer.drain()
    assert conn.our_state is h11.SWITCHED_PROTOCOL
    trailing, _closed = conn.trailing_data
    await resp.upgrade(reader, writer, bytes(trailing))


async def _send(
    conn: h11.Connection, writer: asyncio.StreamWriter, resp: HttpResponse,
    reader: asyncio.StreamReader | None = None,
) -> None:
    headers = [(k, v) for k, v in resp.headers]
    headers.append(("Date", formatdate(usegmt=True)))
    streamed = not isinstance(resp.body, bytes)
    if isinstance(resp.body, bytes):
        headers.append(("Content-Length", str(len(resp.body))))
    else:
        headers.append(("Transfer-Encoding", "chunked"))
    reason = _REASONS.get(resp.status, b"")
    head = h11.Response(status_code=resp.status, headers=headers, reason=reason)
    writer.write(conn.send(head))
    if isinstance(resp.body, bytes):
        if resp.body:
            writer.write(conn.send(h11.Data(data=resp.body)))
    else:
        assert streamed
        await _stream(conn, writer, resp.body, reader)
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()

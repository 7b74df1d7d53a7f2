"""gRPC and HTTP/1.1 on one TCP port: the shared-port front with both relay modes."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from etcdpy.netshare import (
    HttpRequest,
    HttpResponse,
    RelayMode,
    SharedPort,
    SharedPortOptions,
)

pytestmark = pytest.mark.timeout(60)


async def _chunks() -> AsyncIterator[bytes]:
    for i in range(3):
        yield f"part{i}\n".encode()


async def handler(req: HttpRequest) -> HttpResponse:
    if req.path == "/echo":
        body = json.dumps(
            {"method": req.method, "body": req.body.decode(), "q": req.query.get("x", [])}
        )
        return HttpResponse(200, (("Content-Type", "application/json"),), body.encode())
    if req.path == "/stream":
        return HttpResponse(200, (), _chunks())
    if req.path == "/boom":
        raise RuntimeError("handler bug")
    if req.path == "/upgrade":
        return HttpResponse(101, (("Upgrade", "echo"), ("Connection", "Upgrade")), upgrade=_echo)
    return HttpResponse.text(404, "404 page not found\n")


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                pending: bytes) -> None:
    """An upgraded connection's protocol: everything comes back, the early bytes first."""
    writer.write(pending)
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


class Front:
    """A grpc.aio server on a Unix socket (health service) behind a SharedPort on loopback."""

    def __init__(self, relay: RelayMode) -> None:
        self.relay = relay
        self.tmp = tempfile.mkdtemp(prefix="netshare-")
        self.sock_path = str(Path(self.tmp) / "grpc.sock")
        self.server = grpc.aio.server()
        self.health = health.aio.HealthServicer()
        self.port = SharedPort(
            "127.0.0.1", 0, self.sock_path, handler,
            SharedPortOptions(relay=relay, max_connections=8),
        )

    async def __aenter__(self) -> Front:
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.server.add_insecure_port(f"unix:{self.sock_path}")
        await self.server.start()
        await self.health.set("svc", health_pb2.HealthCheckResponse.SERVING)
        await self.port.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.port.stop()
        await self.server.stop(grace=None)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.port}"


def _get(url: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def _grpc_check(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = await stub.Check(health_pb2.HealthCheckRequest(service="svc"), timeout=10)
        return int(resp.status)


@pytest.mark.parametrize("relay", list(RelayMode))
def test_grpc_and_http_share_the_port(relay: RelayMode) -> None:
    async def main() -> None:
        async with Front(relay) as front:
            assert await _grpc_check(front.port.port) == health_pb2.HealthCheckResponse.SERVING
            status, headers, body = await asyncio.to_thread(_get, front.url + "/echo?x=1")
            assert status == 200 and headers["Content-Type"] == "application/json"
            assert json.loads(body) == {"method": "GET", "body": "", "q": ["1"]}
            status, _, body = await asyncio.to_thread(_get, front.url + "/echo", b"hello")
            assert json.loads(body)["method"] == "POST" and json.loads(body)["body"] == "hello"
            status, _, body = await asyncio.to_thread(_get, front.url + "/stream")
            assert status == 200 and body == b"part0\npart1\npart2\n"
            status, _, body = await asyncio.to_thread(_get, front.url + "/nope")
            assert status == 404 and body == b"404 page not found\n"
            status, _, _ = await asyncio.to_thread(_get, front.url + "/boom")
            assert status == 500
            # Many gRPC calls at once, all through the front, interleaved with HTTP.
            results = await asyncio.gather(
                *(_grpc_check(front.port.port) for _ in range(20)),
                asyncio.to_thread(_get, front.url + "/echo"),
            )
            assert results[:20] == [health_pb2.HealthCheckResponse.SERVING] * 20
    asyncio.run(main())


@pytest.mark.parametrize("relay", list(RelayMode))
def test_grpc_connections_are_spread_over_several_servers(relay: RelayMode) -> None:
    """Given several Unix sockets, the front relays each new gRPC connection to the next one;
    every server answers only for the connections it was given."""

    async def main() -> None:
        tmp = tempfile.mkdtemp(prefix="netshare-")
        servers, paths = [], []
        try:
            for index in range(3):
                path = str(Path(tmp) / f"grpc-{index}.sock")
                server = grpc.aio.server()
                servicer = health.aio.HealthServicer()
                health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
                server.add_insecure_port(f"unix:{path}")
                await server.start()
                await servicer.set("which", index)  # each server answers its own status
                servers.append(server)
                paths.append(path)
            port = SharedPort("127.0.0.1", 0, paths, handler, SharedPortOptions(relay=relay))
            await port.start()
            try:
                answers = []
                for _ in range(6):  # one connection each: a channel of its own subchannels,
                    # or grpc could reuse the previous channel's connection while it closes
                    async with grpc.aio.insecure_channel(
                            f"127.0.0.1:{port.port}",
                            options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                        stub = health_pb2_grpc.HealthStub(channel)
                        resp = await stub.Check(health_pb2.HealthCheckRequest(service="which"),
                                                timeout=10)
                        answers.append(int(resp.status))
                assert sorted(answers) == [0, 0, 1, 1, 2, 2], answers
                status, _, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{port.port}/echo")
                assert status == 200  # HTTP/1.1 still served by the front
            finally:
                await port.stop()
        finally:
            for server in servers:
                await server.stop(grace=None)
            shutil.rmtree(tmp, ignore_errors=True)

    asyncio.run(main())


def test_grpc_server_stream_through_the_front() -> None:
    """A long-lived server stream (health Watch) relays updates as they happen."""

    async def main() -> None:
        async with (
            Front(RelayMode.SPLICE) as front,
            grpc.aio.insecure_channel(f"127.0.0.1:{front.port.port}") as channel,
        ):
            stub = health_pb2_grpc.HealthStub(channel)
            call = stub.Watch(health_pb2.HealthCheckRequest(service="svc"), timeout=10)
            first = await call.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            await front.health.set("svc", health_pb2.HealthCheckResponse.NOT_SERVING)
            second = await call.read()
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            call.cancel()
    asyncio.run(main())


def test_keep_alive_and_bad_requests() -> None:
    async def main() -> None:
        async with Front(RelayMode.ASYNCIO) as front:
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port.port)
            req = b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
            writer.write(req + req)  # two pipelined requests on one connection
            await writer.drain()
            answers = b""
            while answers.count(b"HTTP/1.1 200") < 2:
                data = await asyncio.wait_for(reader.read(65536), 10)
                assert data, answers
                answers += data
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            rest = await asyncio.wait_for(reader.read(65536), 10)
            assert rest.startswith(b"HTTP/1.1 400"), rest
            writer.close()
            await writer.wait_closed()
            # The port still serves after a bad client.
            assert await _grpc_check(front.port.port) == health_pb2.HealthCheckResponse.SERVING
    asyncio.run(main())


def test_silent_client_is_disconnected_and_slot_freed() -> None:
    async def main() -> None:
        front = Front(RelayMode.SPLICE)
        front.port = SharedPort(
            "127.0.0.1", 0, front.sock_path, handler,
            SharedPortOptions(max_connections=1, sniff_timeout_s=0.2),
        )
        async with front:
            silent = socket.create_connection(("127.0.0.1", front.port.port), timeout=10)
            try:
                # With one slot taken by a client that never speaks, the next client is
                # served only once the silent one has timed out: bounded, not stuck.
                status, _, _ = await asyncio.to_thread(_get, front.url + "/echo")
                assert status == 200
                assert silent.recv(10) == b""  # the front closed it
            finally:
                silent.close()
    asyncio.run(main())


def test_curl_speaks_http1_to_the_shared_port() -> None:
    assert shutil.which("curl"), "curl is needed (Debian package curl)"

    async def main() -> None:
        async with Front(RelayMode.SPLICE) as front:
            out = await asyncio.to_thread(
                subprocess.run,
                ["curl", "-si", "--max-time", "10", front.url + "/echo?x=2"],
                capture_output=True, check=True,
            )
            head, _, body = out.stdout.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert json.loads(body)["q"] == ["2"]
            assert await _grpc_check(front.port.port) == health_pb2.HealthCheckResponse.SERVING
    asyncio.run(main())


def test_front_process_is_restarted_and_reaped() -> None:
    async def main() -> None:
        front = Front(RelayMode.PROCESS)
        async with front:
            child = front.port._front._proc  # type: ignore[union-attr]
            assert child is not None and child.poll() is None
            assert await _grpc_check(front.port.port) == health_pb2.HealthCheckResponse.SERVING
            child.kill()  # a crash of the front: the parent starts a new one

            async def replaced() -> bool:
                new = front.port._front._proc  # type: ignore[union-attr]
                return new is not None and new is not child and new.poll() is None

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not await replaced():
                assert loop.time() < deadline, "the front process was not restarted"
                await asyncio.sleep(0.05)
            assert await _grpc_check(front.port.port) == health_pb2.HealthCheckResponse.SERVING
            status, _, _ = await asyncio.to_thread(_get, front.url + "/echo")
            assert status == 200
            last = front.port._front._proc  # type: ignore[union-attr]
        assert last is not None and last.poll() is not None, "stop() must reap the child"

    asyncio.run(main())


def test_a_quiet_stream_ends_when_its_client_goes_away() -> None:
    """A streamed body that produces nothing (a gateway watch on a quiet key) is closed as
    soon as the client disconnects, not at its next chunk."""
    closed = asyncio.Event()

    async def quiet() -> AsyncIterator[bytes]:
        try:
            await asyncio.sleep(3600)
            yield b"never"
        finally:
            closed.set()

    async def quiet_handler(req: HttpRequest) -> HttpResponse:
        return HttpResponse(200, (), quiet())

    async def main() -> None:
        front = Front(RelayMode.ASYNCIO)
        front.port = SharedPort("127.0.0.1", 0, front.sock_path, quiet_handler,
                                SharedPortOptions(relay=RelayMode.ASYNCIO))
        async with front:
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port.port)
            writer.write(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            writer.close()
            await asyncio.wait_for(closed.wait(), 10)

    asyncio.run(main())


def test_asyncio_relays_on_one_loop_keep_their_bytes_apart_and_end() -> None:
    """Every asyncio relay on a loop reads into the same buffer: eight connections pushing a
    megabyte each both ways at once (an echo server behind them, so both directions fill
    and pause) must each get back exactly what they sent, the sniffed prefix first. Each
    relay ends once both sides have closed their direction (it used to stay half-open
    forever, two sockets per connection)."""
    from etcdpy.netshare.relay import relay_asyncio

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(7000):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def client(port: int, index: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = bytes((index * 31 + i) % 251 for i in range(1 << 20))

        async def send() -> None:
            for start in range(0, len(payload), 5000 + index * 997):
                writer.write(payload[start:start + 5000 + index * 997])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        echoed = await reader.read(-1)
        await sender
        writer.close()
        assert echoed == b"PRE%d" % index + payload
        return echoed

    async def main() -> None:
        tmp = tempfile.mkdtemp(prefix="netshare-")
        path = str(Path(tmp) / "echo.sock")
        server = await asyncio.start_unix_server(echo, path)
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        relays: list[asyncio.Task[None]] = []

        async def accept(n: int) -> None:
            for index in range(n):
                conn, _ = await loop.sock_accept(listener)
                # the front hands over what it sniffed; here a per-connection marker
                relays.append(asyncio.create_task(relay_asyncio(conn, path, b"PRE%d" % index)))

        try:
            acceptor = asyncio.create_task(accept(8))
            port = listener.getsockname()[1]
            echoed = []
            for index in range(8):  # one at a time so accept order matches the index
                echoed.append(asyncio.create_task(client(port, index)))
                while len(relays) <= index:
                    await asyncio.sleep(0.01)
            results = await asyncio.wait_for(asyncio.gather(*echoed), 30)
            assert [len(r) for r in results] == [len(b"PRE0") + (1 << 20)] * 8
            await acceptor
            await asyncio.wait_for(asyncio.gather(*relays), 10)
        finally:
            listener.close()
            server.close()
            shutil.rmtree(tmp, ignore_errors=True)

    asyncio.run(main())


def test_an_upgrade_hands_the_connection_over_with_the_bytes_already_read() -> None:
    async def main() -> None:
        async with Front(RelayMode.ASYNCIO) as front:
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port.port)
            # A 101 for a request that did not ask to upgrade would break HTTP: 400 instead.
            writer.write(b"GET /upgrade HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 400"), head
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port.port)
            # Bytes of the new protocol sent with the request reach the new owner first.
            writer.write(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                         b"Upgrade: echo\r\n\r\nearly-")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols"), head
            writer.write(b"late")
            assert await asyncio.wait_for(reader.readexactly(10), 10) == b"early-late"
            writer.close()
    asyncio.run(main())

"""The member's side of its read workers: start N per shared client port, restart one that
dies (FrontProcess: at most once a second), stop them at shutdown.

Each worker is a netshare FrontProcess whose child program is `etcdpy.worker`: it gets the
port's listening socket and accepts on it beside the member, and hands back the HTTP/1.1
connections it accepts, which the member serves as if it had accepted them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from etcdpy.netshare.accept import RelayMode
from etcdpy.netshare.front import ChildProgram, FrontProcess

from .status import CHECK_INTERVAL_S, RESEND_S, MemberStatus


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    count: int
    member_unix: str  # the member's gRPC Unix socket (the workers' channel goes there)
    member_writes: str  # the member's socket for batched writes (writes.py)
    sock_dir: str  # where each worker's own gRPC Unix socket is made
    state_dir: str  # <data-dir>/member/state, opened read-only
    map_size: int
    cluster_id: int
    member_id: int
    max_request_bytes: int
    keepalive_min_time_s: float
    relay: RelayMode = RelayMode.SPLICE  # how a worker relays to its own gRPC server
    max_connections: int = 1024
    sniff_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        assert self.count >= 0
        assert self.relay in (RelayMode.ASYNCIO, RelayMode.SPLICE)


class ReadWorkers:
    """The workers of one client port: either they accept on the member's shared `listener`
    (gRPC and HTTP/1.1 on one port), or, with `grpc_address` (a gRPC-only port, as with
    --listen-client-http-urls), each worker's gRPC server binds that address itself beside the
    member's (SO_REUSEPORT: the kernel spreads the connections, and nothing relays them)."""

    def __init__(self, settings: WorkerSettings, listener: socket.socket | None,
                 on_other: Callable[[socket.socket, bytes], Awaitable[None]],
                 status: Callable[[], MemberStatus],
                 on_request: Callable[[bytes, Callable[[bytes], bool]], None],
                 grpc_address: str | None = None) -> None:
        assert (listener is None) != (grpc_address is None), "one way to reach the port"
        self._settings = settings
        self._listener = listener
        self._grpc_address = grpc_address
        self._on_other = on_other
        self._status = status
        self._on_request = on_request  # (a worker's message, how to answer that worker)
        self._procs: list[FrontProcess] = []
        self._pusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        s = self._settings
        if self._listener is not None:
            port = self._listener.getsockname()[1]
            bind: tuple[str, ...] = ()
        else:
            assert self._grpc_address is not None
            port = int(self._grpc_address.rsplit(":", 1)[1])
            bind = ("--grpc-listen", self._grpc_address)
        for index in range(s.count):
            program = ChildProgram(
                module="etcdpy.worker",
                args=(
                    "--member-unix", s.member_unix,
                    "--member-writes", s.member_writes,
                    "--state-dir", s.state_dir,
                    "--map-size", str(s.map_size),
                    "--cluster-id", str(s.cluster_id),
                    "--member-id", str(s.member_id),
                    "--max-request-bytes", str(s.max_request_bytes),
                    "--keepalive-min-time", str(s.keepalive_min_time_s),
                    "--index", str(index),
                    *bind,
                ),
                name=f"read worker {index}",
            )
            unix_path = os.path.join(s.sock_dir, f"worker-{port}-{index}.sock")
            slot: list[FrontProcess] = []  # the process, for answers to its requests

            def on_message(message: bytes, slot: list[FrontProcess] = slot) -> None:
                self._on_request(message, slot[0].send)

            proc = FrontProcess(self._listener, (unix_path,), s.relay, self._on_other,
                                s.max_connections, s.sniff_timeout_s, program, on_message)
            slot.append(proc)
            proc.start()
            self._procs.append(proc)
        self._pusher = asyncio.create_task(self._push_status(), name="read-workers-status")

    @property
    def pids(self) -> list[int | None]:
        return [proc.pid for proc in self._procs]

    async def _push_status(self) -> None:
        """Send the status to every worker when it changes, and every RESEND_S regardless."""
        sent, sent_at = None, 0.0
        while True:
            status = self._status()
            now = time.monotonic()
            if status != sent or now - sent_at >= RESEND_S:
                message = status.encode()
                for proc in self._procs:
                    proc.send(message)
                sent, sent_at = status, now
            await asyncio.sleep(CHECK_INTERVAL_S)

    async def stop(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        for proc in self._procs:
            await proc.stop()
        self._procs = []

"""Writes from read workers to the member in batches: Put, DeleteRange and Txn.

Passing a write to the member as a gRPC call costs the member a whole gRPC call, about as
much Python work as the write itself. Instead a worker sends the request bytes over a Unix
stream socket of the member's, many per write, and the member runs them through the same
validation and server calls its KV servicer does (`KVWrites`) and sends back the response
bytes or the error's code and words. The client cannot tell: the worker returns those bytes
as the call's response, or ends the call with that status.

A call goes the gRPC way instead (`PassThrough`) when the member must see its metadata
(a token, `hasleader`), when it is larger than the member accepts (grpc-go's own error),
when there is no connection to the member right now, and when the member answers PASS
(a request it cannot parse: its gRPC server gives the error).

Frames, both ways: `>IQB` = payload length, sequence number, kind; then the payload.

    worker -> member   kind PUT / DELETE_RANGE / TXN, payload the request message
    member -> worker   kind OK (the response message), ERROR (gRPC status name, NUL, the
                       message) or PASS (empty), with the request's sequence number

Frames written in one event loop iteration leave in one write (a flush scheduled with
call_soon), so a burst of writes costs each side one system call, not one per write.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from enum import IntEnum
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError

from etcdpy import logutil
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server import errors
from etcdpy.server.api.errors import status_code
from etcdpy.server.api.kv import KVWrites
from etcdpy.server.api.metrics import GRPC_HANDLED, GrpcType
from etcdpy.server.etcdserver import EtcdServer

from .passthrough import Counters, PassThrough

log = logutil.get("worker")

_HEAD = struct.Struct(">IQB")
MAX_FRAME = 64 * 1024 * 1024  # a request is at most --max-request-bytes + 512 KiB; a reply, any
# A reply the member never sent (a bug, or a request lost with a connection) fails after this;
# the member answers every write within its own request timeout (at most 105 s).
ANSWER_TIMEOUT_S = 120.0
RECONNECT_S = 0.5


class Kind(IntEnum):
    PUT = 1
    DELETE_RANGE = 2
    TXN = 3
    OK = 10
    ERROR = 11
    PASS = 12


METHODS: dict[str, Kind] = {
    "/etcdserverpb.KV/Put": Kind.PUT,
    "/etcdserverpb.KV/DeleteRange": Kind.DELETE_RANGE,
    "/etcdserverpb.KV/Txn": Kind.TXN,
}
_METHOD_OF = {kind: method for method, kind in METHODS.items()}
_PARSERS: dict[Kind, Callable[[bytes], Any]] = {
    Kind.PUT: pb.PutRequest.FromString,
    Kind.DELETE_RANGE: pb.DeleteRangeRequest.FromString,
    Kind.TXN: pb.TxnRequest.FromString,
}


class _Framed(asyncio.Protocol):
    """Length-prefixed frames over a stream; outgoing frames are coalesced per loop turn."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._inbox = bytearray()
        self._outbox: list[bytes] = []
        self._flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's transport (uvloop's are not asyncio.Transport subclasses)
        self.transport = cast(asyncio.Transport, transport)

    def send(self, seq: int, kind: Kind, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._outbox.append(_HEAD.pack(len(payload), seq, kind))
        self._outbox.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        frames, self._outbox = self._outbox, []
        if frames and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(frames))

    def data_received(self, data: bytes) -> None:
        inbox = self._inbox
        inbox += data
        offset = 0
        end = len(inbox)
        while end - offset >= _HEAD.size:
            length, seq, kind = _HEAD.unpack_from(inbox, offset)
            if length > MAX_FRAME:
                log.warning("closing a writes connection: frame too large", size=length)
                assert self.transport is not None
                self.transport.close()
                return
            start = offset + _HEAD.size
            if end - start < length:
                break
            self.on_frame(seq, kind, bytes(inbox[start:start + length]))
            offset = start + length
        del inbox[:offset]

    def on_frame(self, seq: int, kind: int, payload: bytes) -> None:
        raise NotImplementedError


# --- member side ---


class WriteAnswers:
    """The member's writes socket: answers every worker connected to it."""

    def __init__(self, server: EtcdServer) -> None:
        self._writes = KVWrites(server)
        self._server = server
        # Put and DeleteRange are answered from callbacks (no task each: the member's time is
        # what bounds a worker's writes); Txn may wait for a read barrier, so it gets a task.
        self._now: dict[Kind, Callable[[Any, Callable[[Any], None]], None]] = {
            Kind.PUT: self._writes.put_then,
            Kind.DELETE_RANGE: self._writes.delete_range_then,
        }
        self._listener: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_unix_server(lambda: _MemberSide(self), path)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
            self._listener = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    def take(self, side: _MemberSide, seq: int, kind: int, raw: bytes) -> None:
        if kind not in _PARSERS:
            side.send(seq, Kind.PASS, b"")  # nothing else is asked this way
            return
        try:
            request = _PARSERS[Kind(kind)](raw)
        except DecodeError:
            side.send(seq, Kind.PASS, b"")  # the member's gRPC server words it
            return
        method = _METHOD_OF[Kind(kind)]
        # Counted as the member counts its own unary calls (grpc_server_handled_total).
        GRPC_HANDLED.started(method, GrpcType.UNARY)
        GRPC_HANDLED.received(method, GrpcType.UNARY)

        def done(result: Any) -> None:
            self._reply(side, seq, method, result)

        start = self._now.get(Kind(kind))
        if start is None:
            task = asyncio.get_running_loop().create_task(self._answer_txn(request, done))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        try:
            if self._server.is_learner:
                raise errors.NotSupportedForLearner()  # the interceptor's check
            start(request, done)
        except Exception as exc:  # refused before it was proposed
            done(exc)

    async def _answer_txn(self, request: pb.TxnRequest, done: Callable[[Any], None]) -> None:
        try:
            if self._server.is_learner:
                raise errors.NotSupportedForLearner()
            result: Any = await self._writes.txn(request)
        except Exception as exc:
            result = exc
        done(result)

    def _reply(self, side: _MemberSide, seq: int, method: str, result: Any) -> None:
        if isinstance(result, errors.EtcdError):
            code = status_code(result)
            GRPC_HANDLED.handled(method, code)
            side.send(seq, Kind.ERROR, code.name.encode() + b"\0" + result.message.encode())
        elif isinstance(result, BaseException):  # what grpcio answers for a servicer's bug
            log.error("batched write failed", error=repr(result))
            GRPC_HANDLED.handled(method, grpc.StatusCode.UNKNOWN)
            side.send(seq, Kind.ERROR,
                      b"UNKNOWN\0" + f"Unexpected {type(result)}: {result}".encode())
        else:
            GRPC_HANDLED.sent(method, GrpcType.UNARY)
            GRPC_HANDLED.handled(method, grpc.StatusCode.OK)
            side.send(seq, Kind.OK, result.SerializeToString())


class _MemberSide(_Framed):
    def __init__(self, answers: WriteAnswers) -> None:
        super().__init__()
        self._answers = answers

    def on_frame(self, seq: int, kind: int, payload: bytes) -> None:
        self._answers.take(self, seq, kind, payload)


# --- worker side ---


Answer = tuple[Kind, bytes]


class ControlWrites(_Framed):
    """The worker's connection to the member's writes socket (reconnects when it drops)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self._next = 0
        # invariant: every future here belongs to a frame sent on the current connection
        self._waiting: dict[int, tuple[asyncio.Future[Answer], float]] = {}
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected(), name="worker-writes")

    async def stop(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.transport is not None:
            self.transport.close()
        self._fail_all("the worker is stopping")

    def submit(self, kind: Kind, raw: bytes) -> asyncio.Future[Answer] | None:
        """The member's answer to this request, or None when not connected (pass it by gRPC)."""
        if not self._connected:
            return None
        self._next += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting[self._next] = (future, loop.time() + ANSWER_TIMEOUT_S)
        self.send(self._next, kind, raw)
        return future

    def on_frame(self, seq: int, kind: int, payload: bytes) -> None:
        entry = self._waiting.pop(seq, None)
        if entry is not None and not entry[0].done():
            # anything but an answer the member gives is taken as PASS: the gRPC way decides
            outcome = Kind(kind) if kind in (Kind.OK, Kind.ERROR) else Kind.PASS
            entry[0].set_result((outcome, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        self._connected = False
        self._fail_all("the connection to the member was lost")

    def _fail_all(self, why: str) -> None:
        waiting, self._waiting = self._waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                future.set_exception(_unavailable(why))

    async def _keep_connected(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._connected:
                self._inbox.clear()
                self._outbox.clear()
                try:
                    await loop.create_unix_connection(lambda: self, self._path)
                    self._connected = True
                except OSError as exc:
                    log.debug("cannot reach the member's writes socket", error=str(exc))
            self._expire(loop.time())
            await asyncio.sleep(RECONNECT_S)

    def _expire(self, now: float) -> None:
        late = [seq for seq, (_, deadline) in self._waiting.items() if deadline <= now]
        for seq in late:
            future, _ = self._waiting.pop(seq)
            if not future.done():
                future.set_exception(_unavailable("no answer from the member"))


class BatchedWrites:
    """The worker's Put, DeleteRange and Txn handlers."""

    def __init__(self, control: ControlWrites, passthrough: PassThrough, max_bytes: int,
                 member_keys: frozenset[str], counters: Counters) -> None:
        self._control = control
        self._pass = passthrough
        self._max_bytes = max_bytes  # the member refuses a request larger than this
        self._member_keys = member_keys
        self._counters = counters

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {method: self._handler(method, kind) for method, kind in METHODS.items()}

    def _handler(self, method: str, kind: Kind) -> grpc.RpcMethodHandler:
        async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._handle(method, kind, raw, context)

        return grpc.unary_unary_rpc_method_handler(handle)

    async def _handle(self, method: str, kind: Kind, raw: bytes,
                      context: grpc.aio.ServicerContext) -> bytes:
        future = None
        if len(raw) <= self._max_bytes and not any(
                key in self._member_keys for key, _ in context.invocation_metadata() or ()):
            future = self._control.submit(kind, raw)
        if future is None:
            return await self._pass.unary(method, raw, context)
        try:
            outcome, payload = await future
        except grpc.aio.AioRpcError as error:
            await context.abort(error.code(), error.details() or "")
            raise AssertionError("abort returned") from None  # pragma: no cover
        if outcome is Kind.OK:
            self._counters.batched_writes += 1
            return payload
        if outcome is Kind.ERROR:
            self._counters.batched_writes += 1
            code, _, details = payload.partition(b"\0")
            await context.abort(grpc.StatusCode[code.decode()], details.decode())
        return await self._pass.unary(method, raw, context)


def _unavailable(why: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                grpc.aio.Metadata(), why)

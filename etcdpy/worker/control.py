"""ReadIndex over the worker's control socket: a cheaper way to ask the member than gRPC.

A gRPC call costs the member as much Python work as a Range; a SEQPACKET message and a reply
cost it a few microseconds, so a loaded member answers its workers' read index requests
without taking time from its own clients. Messages (all small, one per datagram):

    worker -> member   b"R" + seq (8 bytes)
    member -> worker   b"A" + seq + applied index + raft term (8 bytes each)
                       b"E" + seq + gRPC status name + b"\\0" + the error's message
    member -> worker   status messages (status.py), whose first byte is b"S"

The member answers with the very barrier (and errors) a linearizable Range of its own waits
on, so a worker's client sees the member's status code and words.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import grpc

from etcdpy._pb.workerpb import worker_pb2
from etcdpy.server import errors
from etcdpy.server.api.errors import status_code
from etcdpy.server.etcdserver import EtcdServer

_SEQ = struct.Struct(">Q")
_ANSWER = struct.Struct(">QQQ")
MAX_PENDING = 64  # requests one worker may have unanswered at the member (it sends one)
# Longer than the member's own request timeout (5 s + 2 election timeouts, at most 105 s):
# an unanswered request (a message lost with a dying socket) fails instead of hanging.
ANSWER_TIMEOUT_S = 120.0


# --- member side ---


class ReadIndexAnswers:
    """Answers one worker's requests; `reply` sends on that worker's control socket."""

    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._tasks: set[asyncio.Task[None]] = set()

    def on_message(self, message: bytes, reply: Callable[[bytes], bool]) -> None:
        if message[:1] != b"R" or len(message) != 1 + _SEQ.size:
            return  # nothing else is asked this way
        if len(self._tasks) >= MAX_PENDING:
            return  # a worker sends one at a time; more is a bug, not to be queued forever
        task = asyncio.create_task(self._answer(message[1:], reply), name="worker-read-index")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, seq: bytes, reply: Callable[[bytes], bool]) -> None:
        server = self._server
        try:
            if server.is_learner:
                # what the member's Range says to a linearizable read on a learner
                raise errors.NotSupportedForLearner()
            await server.linearizable_barrier()
        except errors.EtcdError as error:
            reply(b"E" + seq + status_code(error).name.encode() + b"\0"
                  + error.message.encode()[:200])
            return
        reply(b"A" + _ANSWER.pack(int.from_bytes(seq, "big"), server.applied_index,
                                  server.term))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)


# --- worker side ---


class ControlReadIndex:
    """The worker's ReadIndex call (ReadIndexBatcher's `call`) over the control socket."""

    def __init__(self, control_fd: int) -> None:
        # Our own descriptor of the control socket for sending; serve_front_child reads it
        # and hands the member's answers to on_message.
        self._sock = socket.socket(fileno=control_fd)
        self._sock.setblocking(False)
        self._next = 0
        self._waiting: dict[int, asyncio.Future[worker_pb2.ReadIndexResponse]] = {}

    def close(self) -> None:
        self._sock.close()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(_unavailable("the member closed the connection"))

    async def __call__(self, _request: worker_pb2.ReadIndexRequest
                       ) -> worker_pb2.ReadIndexResponse:
        self._next += 1
        seq = self._next
        future: asyncio.Future[worker_pb2.ReadIndexResponse] = (
            asyncio.get_running_loop().create_future())
        self._waiting[seq] = future
        try:
            for _ in range(100):  # a full socket is retried for up to a second
                try:
                    self._sock.send(b"R" + _SEQ.pack(seq))
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            else:
                raise _unavailable("the member is not taking requests")
            try:
                return await asyncio.wait_for(future, ANSWER_TIMEOUT_S)
            except TimeoutError:
                raise _unavailable("no answer from the member") from None
        finally:
            self._waiting.pop(seq, None)

    def on_message(self, message: bytes) -> bool:
        """Take a ReadIndex answer; False if the message is not one."""
        kind = message[:1]
        if kind == b"A" and len(message) == 1 + _ANSWER.size:
            seq, applied, term = _ANSWER.unpack(message[1:])
            future = self._waiting.get(seq)
            if future is not None and not future.done():
                future.set_result(worker_pb2.ReadIndexResponse(applied_index=applied,
                                                               raft_term=term))
            return True
        if kind == b"E" and len(message) > 1 + _SEQ.size:
            (seq,) = _SEQ.unpack(message[1:1 + _SEQ.size])
            code, _, details = message[1 + _SEQ.size:].partition(b"\0")
            future = self._waiting.get(seq)
            if future is not None and not future.done():
                future.set_exception(grpc.aio.AioRpcError(
                    grpc.StatusCode[code.decode()], grpc.aio.Metadata(), grpc.aio.Metadata(),
                    details.decode()))
            return True
        return False


def _unavailable(why: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                grpc.aio.Metadata(), why)

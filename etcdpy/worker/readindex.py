"""Linearizable reads in a worker: one ReadIndex call to the member serves a whole batch.

A read may use a ReadIndex answer only if the call was *sent after the read arrived*: then
the member's barrier covers every write acknowledged before the read started. So reads that
arrive while a call is in flight wait for a later call, and every read waiting when a call
is sent shares it (the member's own `_read_loop` batches the same way). MAX_IN_FLIGHT bounds
the calls in flight. It is 1: fewer, larger batches cost the member least. (Over gRPC, 2 in
flight made a loaded member's batches ~4 reads instead of ~10 and cost a quarter of the
worker's linearizable reads; over the control socket, control.py, 2 measured within noise of
1 on scripts/bench's range workload.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from etcdpy._pb.workerpb import worker_pb2

from .passthrough import Counters

MAX_IN_FLIGHT = 1


@dataclass(frozen=True, slots=True)
class ReadPoint:
    """The member's answer: a read transaction holding `applied_index` is current."""

    applied_index: int
    raft_term: int


ReadIndexCall = Callable[[worker_pb2.ReadIndexRequest], Awaitable[worker_pb2.ReadIndexResponse]]


class ReadIndexBatcher:
    def __init__(self, call: ReadIndexCall, counters: Counters) -> None:
        self._call = call
        self._counters = counters
        # invariant: _waiting is None, or the future every read arrived since the last send
        # waits on; it is resolved by the next call, never by one already in flight
        self._waiting: asyncio.Future[ReadPoint] | None = None
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._calls: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.latest_term = 0  # the highest term any answer carried

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="worker-read-index")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for call in list(self._calls):
            call.cancel()
        if self._calls:
            await asyncio.wait(list(self._calls))
        if self._waiting is not None and not self._waiting.done():
            self._waiting.cancel()

    async def wait(self) -> ReadPoint:
        """A read point from a ReadIndex call sent after this call began; raises the
        member's error (grpc.aio.AioRpcError) if the call failed."""
        if self._waiting is None:
            self._waiting = asyncio.get_running_loop().create_future()
            # if every reader gave up before the answer, nobody else looks at the error
            self._waiting.add_done_callback(_retrieve)
            self._wake.set()
        # shielded: one reader giving up (its client cancelled) must not fail the others
        return await asyncio.shield(self._waiting)

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._waiting is None:
                continue
            await self._slots.acquire()
            # reads that arrived while waiting for a slot join this batch: still before send
            batch, self._waiting = self._waiting, None
            assert batch is not None
            task = asyncio.create_task(self._send(batch), name="worker-read-index-call")
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _send(self, batch: asyncio.Future[ReadPoint]) -> None:
        try:
            self._counters.read_index_calls += 1
            try:
                reply = await self._call(worker_pb2.ReadIndexRequest())
            except grpc.aio.AioRpcError as error:
                if not batch.done():
                    batch.set_exception(error)
                return
            self.latest_term = max(self.latest_term, reply.raft_term)
            if not batch.done():
                batch.set_result(ReadPoint(reply.applied_index, reply.raft_term))
        finally:
            self._slots.release()


def _retrieve(future: asyncio.Future[ReadPoint]) -> None:
    if not future.cancelled():
        future.exception()

"""ReadIndexBatcher (in-process): one call serves every read waiting when it is sent, a read
arriving while a call is in flight waits for a later one, at most MAX_IN_FLIGHT calls are in
flight, and errors reach every waiter."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from etcdpy._pb.workerpb import worker_pb2
from etcdpy.worker.methods import Shape, shape_of
from etcdpy.worker.passthrough import Counters
from etcdpy.worker.readindex import MAX_IN_FLIGHT, ReadIndexBatcher, ReadPoint


class FakeMember:
    """Answers ReadIndex calls when the test says so; index = how many calls were sent."""

    def __init__(self) -> None:
        self.sent = 0
        self.release: asyncio.Queue[BaseException | None] = asyncio.Queue()

    async def call(self, _request: worker_pb2.ReadIndexRequest) -> worker_pb2.ReadIndexResponse:
        self.sent += 1
        index = self.sent
        outcome = await self.release.get()
        if outcome is not None:
            raise outcome
        return worker_pb2.ReadIndexResponse(applied_index=index * 10, raft_term=3)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_reads_share_a_call_sent_after_they_arrived() -> None:
    async def scenario() -> None:
        member, counters = FakeMember(), Counters()
        batcher = ReadIndexBatcher(member.call, counters)
        batcher.start()
        first = [asyncio.create_task(batcher.wait()) for _ in range(3)]
        await _settle()
        assert member.sent == 1  # three reads, one call
        late = [asyncio.create_task(batcher.wait()) for _ in range(2)]  # during call 1
        await _settle()
        assert member.sent == MAX_IN_FLIGHT == 1  # no second call while one is in flight
        member.release.put_nowait(None)
        assert await asyncio.gather(*first) == [ReadPoint(10, 3)] * 3
        await _settle()
        assert member.sent == 2 and not any(t.done() for t in late)  # call 1 was too early
        member.release.put_nowait(None)
        assert await asyncio.gather(*late) == [ReadPoint(20, 3)] * 2
        again = asyncio.create_task(batcher.wait())
        await _settle()
        member.release.put_nowait(None)
        assert await again == ReadPoint(30, 3)
        assert counters.read_index_calls == 3 and batcher.latest_term == 3
        await batcher.stop()

    asyncio.run(scenario())


def test_a_failed_call_fails_its_reads_and_the_next_call_is_fresh() -> None:
    class Refused(grpc.aio.AioRpcError):
        def __init__(self) -> None:
            super().__init__(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                             grpc.aio.Metadata(), "etcdserver: no leader")

    async def scenario() -> None:
        member = FakeMember()
        batcher = ReadIndexBatcher(member.call, Counters())
        batcher.start()
        waiting = [asyncio.create_task(batcher.wait()) for _ in range(2)]
        await _settle()
        member.release.put_nowait(Refused())
        for task in waiting:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await task
            assert info.value.details() == "etcdserver: no leader"
        again = asyncio.create_task(batcher.wait())
        await _settle()
        member.release.put_nowait(None)
        assert await again == ReadPoint(20, 3)
        await batcher.stop()

    asyncio.run(scenario())


def test_call_shapes_come_from_the_service_descriptors() -> None:
    assert shape_of("/etcdserverpb.KV/Range") is Shape.UNARY_UNARY
    assert shape_of("/etcdserverpb.Watch/Watch") is Shape.STREAM_STREAM
    assert shape_of("/etcdserverpb.Lease/LeaseKeepAlive") is Shape.STREAM_STREAM
    assert shape_of("/etcdserverpb.Maintenance/Snapshot") is Shape.UNARY_STREAM
    assert shape_of("/v3electionpb.Election/Observe") is Shape.UNARY_STREAM
    assert shape_of("/grpc.health.v1.Health/Watch") is Shape.UNARY_STREAM
    assert shape_of("/no.Such/Method") is Shape.STREAM_STREAM  # correct for any shape

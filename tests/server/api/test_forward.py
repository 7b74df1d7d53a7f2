"""Keep-alives a follower forwards: KeepAliveStream (the follower's side) against the leader's
LeaderForwardServicer, over a real gRPC connection on loopback. The leader's lease table is a
stand-in; the batching, the pairing of answers and the failures are what is tested."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from etcdpy._pb.forwardpb import forward_pb2 as fpb
from etcdpy._pb.forwardpb import forward_pb2_grpc as forward_grpc
from etcdpy.server import errors
from etcdpy.server.api import forward
from etcdpy.server.api.forward import MAX_BATCH, KeepAliveStream
from etcdpy.server.api.leader_forward import LeaderForwardServicer

UNKNOWN = 99


class Leader:
    """The part of EtcdServer the leader's servicer uses: leases 1..3 with TTLs 10, 20, 30."""

    def __init__(self) -> None:
        self.leading = True
        self.renewed: list[int] = []

    def lease_renew(self, lease_id: int) -> int:
        if not self.leading:
            raise errors.NotLeader()
        if lease_id not in (1, 2, 3):
            raise errors.LeaseNotFound()
        self.renewed.append(lease_id)
        return lease_id * 10


class Recording(LeaderForwardServicer):
    """The leader's servicer, noting the size of every request it reads."""

    def __init__(self, server: Any, sizes: list[int]) -> None:
        super().__init__(server)
        self._sizes = sizes

    async def KeepAlives(  # noqa: N802
        self, request_iterator: AsyncIterator[fpb.LeaseIDs], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[fpb.LeaseTTLs]:
        async def counted() -> AsyncIterator[fpb.LeaseIDs]:
            async for request in request_iterator:
                self._sizes.append(len(request.ids))
                yield request

        async for resp in super().KeepAlives(counted(), context):
            yield resp


class Silent(forward_grpc.LeaderForwardServicer):
    """A leader that reads requests and never answers."""

    async def KeepAlives(  # noqa: N802
        self, request_iterator: AsyncIterator[fpb.LeaseIDs], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[fpb.LeaseTTLs]:
        async for _request in request_iterator:
            pass
        if False:  # pragma: no cover - makes this an async generator
            yield fpb.LeaseTTLs()


class Short(forward_grpc.LeaderForwardServicer):
    """A leader whose answers hold one TTL fewer than asked for."""

    async def KeepAlives(  # noqa: N802
        self, request_iterator: AsyncIterator[fpb.LeaseIDs], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[fpb.LeaseTTLs]:
        async for request in request_iterator:
            yield fpb.LeaseTTLs(ttls=[10] * (len(request.ids) - 1))


def _with_leader(servicer: forward_grpc.LeaderForwardServicer,
                 scenario: Callable[[grpc.aio.Channel], Awaitable[None]]) -> None:
    async def run() -> None:
        server = grpc.aio.server()
        forward_grpc.add_LeaderForwardServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await scenario(channel)
        finally:
            await server.stop(None)

    asyncio.run(asyncio.wait_for(run(), 30))


async def _outcomes(answers: list[asyncio.Future[int]]) -> list[int | str]:
    done = await asyncio.gather(*answers, return_exceptions=True)
    return [a.message if isinstance(a, errors.EtcdError) else a for a in done]  # type: ignore[misc]


def test_keep_alives_queued_together_travel_as_one_request_and_get_their_own_ttls() -> None:
    leader, sizes = Leader(), []

    async def scenario(channel: grpc.aio.Channel) -> None:
        stream = KeepAliveStream(channel)
        ids = [1, 2, UNKNOWN, 3] * 10
        answers = [stream.renewal(lease_id) for lease_id in ids]
        assert await _outcomes(answers) == [0 if i == UNKNOWN else i * 10 for i in ids]
        assert sizes == [40]
        # The stream stays open for the next ones.
        assert await stream.renewal(2) == 20
        assert sizes == [40, 1] and not stream.broken
        stream.close()

    _with_leader(Recording(leader, sizes), scenario)
    assert leader.renewed.count(1) == 10 and leader.renewed.count(2) == 11


def test_no_request_holds_more_than_max_batch_ids() -> None:
    leader, sizes = Leader(), []

    async def scenario(channel: grpc.aio.Channel) -> None:
        stream = KeepAliveStream(channel)
        answers = [stream.renewal(1 + i % 3) for i in range(MAX_BATCH + 10)]
        assert await _outcomes(answers) == [10 * (1 + i % 3) for i in range(MAX_BATCH + 10)]
        assert sizes == [MAX_BATCH, 10]
        stream.close()

    _with_leader(Recording(leader, sizes), scenario)


def test_a_member_that_no_longer_leads_fails_every_waiting_keep_alive() -> None:
    leader = Leader()

    async def scenario(channel: grpc.aio.Channel) -> None:
        stream = KeepAliveStream(channel)
        assert await stream.renewal(1) == 10
        leader.leading = False
        answers = [stream.renewal(lease_id) for lease_id in (1, 2, 3)]
        assert await _outcomes(answers) == ["etcdserver: leader changed"] * 3
        assert stream.broken

    _with_leader(LeaderForwardServicer(leader), scenario)  # type: ignore[arg-type]


def test_a_leader_that_does_not_answer_in_time_fails_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forward, "FORWARD_TIMEOUT_S", 0.3)

    async def scenario(channel: grpc.aio.Channel) -> None:
        stream = KeepAliveStream(channel)
        first = [stream.renewal(1), stream.renewal(2)]
        await asyncio.sleep(0)
        later = stream.renewal(3)  # queued behind a request that is never answered
        assert await _outcomes([*first, later]) == ["etcdserver: leader changed"] * 3
        assert stream.broken

    _with_leader(Silent(), scenario)


def test_an_answer_that_does_not_fit_its_request_is_not_trusted() -> None:
    async def scenario(channel: grpc.aio.Channel) -> None:
        stream = KeepAliveStream(channel)
        answers = [stream.renewal(lease_id) for lease_id in (1, 2, 3)]
        assert await _outcomes(answers) == ["etcdserver: leader changed"] * 3
        assert stream.broken

    _with_leader(Short(), scenario)


def test_the_leader_answers_a_bare_client_like_lease_keep_alive() -> None:
    """Called directly (as any client could): TTLs, 0 for unknown, no other power."""
    leader = Leader()

    async def scenario(channel: grpc.aio.Channel) -> None:
        call = forward_grpc.LeaderForwardStub(channel).KeepAlives(
            iter([fpb.LeaseIDs(ids=[3, UNKNOWN]), fpb.LeaseIDs()]))
        assert [list(r.ttls) async for r in call] == [[30, 0], []]
        leader.leading = False
        call = forward_grpc.LeaderForwardStub(channel).KeepAlives(iter([fpb.LeaseIDs(ids=[1])]))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for _resp in call:
                pass
        assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert failed.value.details() == "etcdserver: not leader"

    _with_leader(LeaderForwardServicer(SimpleNamespace(lease_renew=leader.lease_renew)),  # type: ignore[arg-type]
                 scenario)

"""etcdserverpb.Lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.server import errors
from etcdpy.server.api.errors import grpc_errors, status_code
from etcdpy.server.api.forward import LeaderForwarder
from etcdpy.server.errors import EtcdError
from etcdpy.server.etcdserver import EtcdServer


class LeaseServicer(pb_grpc.LeaseServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._leader = LeaderForwarder(server)

    async def LeaseGrant(  # noqa: N802
        self, request: pb.LeaseGrantRequest, context: grpc.aio.ServicerContext
    ) -> pb.LeaseGrantResponse:
        async with grpc_errors(context):
            resp = await self._server.lease_grant(request)
            self._server.fill_header(resp.header)
            return resp

    async def LeaseRevoke(  # noqa: N802
        self, request: pb.LeaseRevokeRequest, context: grpc.aio.ServicerContext
    ) -> pb.LeaseRevokeResponse:
        async with grpc_errors(context):
            resp = await self._server.lease_revoke(request)
            self._server.fill_header(resp.header)
            return resp

    async def LeaseKeepAlive(  # noqa: N802
        self,
        request_iterator: AsyncIterator[pb.LeaseKeepAliveRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.LeaseKeepAliveResponse]:
        requests = aiter(request_iterator)
        async for request in requests:
            try:
                ttl = self._server.lease_renew(request.ID)
            except errors.NotLeader:
                # The leader keeps the deadlines: from here on this stream's keep-alives go
                # on to it, pipelined.
                async for resp in self._forwarded(request.ID, requests, context):
                    yield resp
                return
            except EtcdError as error:
                ttl = await _verdict(error, context)
            yield self._answer(request.ID, ttl)

    async def _forwarded(
        self, first_id: int, requests: AsyncIterator[pb.LeaseKeepAliveRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.LeaseKeepAliveResponse]:
        """Keep-alives sent on to the leader as they arrive and answered in their order.
        Waiting for each answer before reading the next request would hold a client's
        stream to one renewal per round trip to the leader (etcd's follower does that, but
        its round trip is a tenth of ours)."""
        renewals: asyncio.Queue[tuple[int, asyncio.Future[int]] | None] = asyncio.Queue()
        renewals.put_nowait((first_id, self._renewal(first_id)))

        async def take_requests() -> None:
            try:
                async for request in requests:
                    renewals.put_nowait((request.ID, self._renewal(request.ID)))
            finally:
                renewals.put_nowait(None)

        taker = asyncio.ensure_future(take_requests())
        try:
            while (item := await renewals.get()) is not None:
                lease_id, renewal = item
                try:
                    ttl = await renewal
                except EtcdError as error:
                    ttl = await _verdict(error, context)
                yield self._answer(lease_id, ttl)
            await taker  # the client's stream ended: raise what ended it, if anything did
        finally:
            taker.cancel()
            while not renewals.empty():  # answers nobody will read (the stream is over)
                item = renewals.get_nowait()
                if item is not None:
                    item[1].add_done_callback(_retrieve)

    def _renewal(self, lease_id: int) -> asyncio.Future[int]:
        """A keep-alive answered here if this member now leads, else by the leader."""
        try:
            return _settled(self._server.lease_renew(lease_id))
        except errors.NotLeader:
            pass
        except EtcdError as error:
            return _settled(error)
        try:
            return self._leader.keep_alive(lease_id)
        except EtcdError as error:
            return _settled(error)

    def _answer(self, lease_id: int, ttl: int) -> pb.LeaseKeepAliveResponse:
        resp = pb.LeaseKeepAliveResponse(ID=lease_id, TTL=ttl)
        self._server.fill_header(resp.header)
        return resp

    async def LeaseTimeToLive(  # noqa: N802
        self, request: pb.LeaseTimeToLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.LeaseTimeToLiveResponse:
        async with grpc_errors(context):
            try:
                resp = await self._server.lease_time_to_live(request)
            except errors.NotLeader:
                resp = await self._leader.time_to_live(request)
            self._server.fill_header(resp.header)
            return resp

    async def LeaseLeases(  # noqa: N802
        self, request: pb.LeaseLeasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.LeaseLeasesResponse:
        async with grpc_errors(context):
            resp = await self._server.lease_leases()
            self._server.fill_header(resp.header)
            return resp


async def _verdict(error: EtcdError, context: grpc.aio.ServicerContext) -> int:
    """An unknown or expired lease answers TTL 0, not an error (etcd's behaviour); any other
    failure ends the stream with its status."""
    if error.code == "NOT_FOUND":
        return 0
    await context.abort(status_code(error), error.message)
    raise AssertionError("abort returns only by raising")


def _settled(outcome: int | EtcdError) -> asyncio.Future[int]:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    if isinstance(outcome, EtcdError):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
    return future


def _retrieve(future: asyncio.Future[int]) -> None:
    """Mark an abandoned answer's error as seen (asyncio would log it as never retrieved)."""
    if not future.cancelled():
        future.exception()

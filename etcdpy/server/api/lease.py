"""etcdserverpb.Lease."""

from __future__ import annotations

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
        async for request in request_iterator:
            try:
                try:
                    ttl = await self._server.lease_renew(request.ID)
                except errors.NotLeader:
                    ttl = await self._leader.keep_alive(request.ID)
            except EtcdError as error:
                # An unknown or expired lease answers TTL 0, not an error (etcd's behaviour);
                # any other failure ends the stream with its status.
                if error.code == "NOT_FOUND":
                    ttl = 0
                else:
                    await context.abort(status_code(error), error.message)
            resp = pb.LeaseKeepAliveResponse(ID=request.ID, TTL=ttl)
            self._server.fill_header(resp.header)
            yield resp

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

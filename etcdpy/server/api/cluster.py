"""etcdserverpb.Cluster: the member list and membership changes."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.cluster.membership import Member
from etcdpy.server import errors
from etcdpy.server.api.errors import grpc_errors
from etcdpy.server.api.forward import LeaderForwarder
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.membership import to_pb


def _all(members: Sequence[Member]) -> list[pb.Member]:
    return [to_pb(m) for m in members]


class ClusterServicer(pb_grpc.ClusterServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._leader = LeaderForwarder(server)

    async def MemberList(  # noqa: N802
        self, request: pb.MemberListRequest, context: grpc.aio.ServicerContext
    ) -> pb.MemberListResponse:
        async with grpc_errors(context):
            if request.linearizable:
                await self._server.linearizable_barrier()
            resp = pb.MemberListResponse(members=_all(self._server.members()))
            self._server.fill_header(resp.header)
            return resp

    async def MemberAdd(  # noqa: N802
        self, request: pb.MemberAddRequest, context: grpc.aio.ServicerContext
    ) -> pb.MemberAddResponse:
        async with grpc_errors(context):
            member, members = await self._server.member_add(request.peerURLs, request.isLearner)
            resp = pb.MemberAddResponse(member=to_pb(member), members=_all(members))
            self._server.fill_header(resp.header)
            return resp

    async def MemberRemove(  # noqa: N802
        self, request: pb.MemberRemoveRequest, context: grpc.aio.ServicerContext
    ) -> pb.MemberRemoveResponse:
        async with grpc_errors(context):
            members = await self._server.member_remove(request.ID)
            resp = pb.MemberRemoveResponse(members=_all(members))
            self._server.fill_header(resp.header)
            return resp

    async def MemberUpdate(  # noqa: N802
        self, request: pb.MemberUpdateRequest, context: grpc.aio.ServicerContext
    ) -> pb.MemberUpdateResponse:
        async with grpc_errors(context):
            members = await self._server.member_update(request.ID, request.peerURLs)
            resp = pb.MemberUpdateResponse(members=_all(members))
            self._server.fill_header(resp.header)
            return resp

    async def MemberPromote(  # noqa: N802
        self, request: pb.MemberPromoteRequest, context: grpc.aio.ServicerContext
    ) -> pb.MemberPromoteResponse:
        async with grpc_errors(context):
            try:
                members = await self._server.member_promote(request.ID)
            except errors.NotLeader:
                resp = await self._leader.member_promote(request)
            else:
                resp = pb.MemberPromoteResponse(members=_all(members))
            self._server.fill_header(resp.header)
            return resp

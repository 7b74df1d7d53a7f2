"""etcdserverpb.Cluster: the member list (membership changes arrive with multi-member work)."""

from __future__ import annotations

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.server.etcdserver import EtcdServer


class ClusterServicer(pb_grpc.ClusterServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def MemberList(  # noqa: N802
        self, request: pb.MemberListRequest, context: grpc.aio.ServicerContext
    ) -> pb.MemberListResponse:
        if request.linearizable:
            await self._server.linearizable_barrier()
        resp = pb.MemberListResponse()
        for m in self._server.members():
            resp.members.add(
                ID=m.id, name=m.name, peerURLs=list(m.peer_urls), clientURLs=list(m.client_urls),
                isLearner=m.is_learner,
            )
        self._server.fill_header(resp.header)
        return resp

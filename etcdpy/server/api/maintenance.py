"""etcdserverpb.Maintenance: status, hashes and alarms (defragment and snapshot come later)."""

from __future__ import annotations

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.server.api.errors import grpc_errors
from etcdpy.server.etcdserver import EtcdServer


class MaintenanceServicer(pb_grpc.MaintenanceServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def Status(self, request: pb.StatusRequest, context: grpc.aio.ServicerContext) -> pb.StatusResponse:  # noqa: N802
        resp = self._server.status()
        self._server.fill_header(resp.header)
        return resp

    async def Alarm(self, request: pb.AlarmRequest, context: grpc.aio.ServicerContext) -> pb.AlarmResponse:  # noqa: N802
        # No alarm can be raised yet (NOSPACE and CORRUPT arrive with quotas and corruption
        # checks), so GET answers an empty list and ACTIVATE/DEACTIVATE have nothing to change.
        resp = pb.AlarmResponse()
        self._server.fill_header(resp.header)
        return resp

    async def MoveLeader(  # noqa: N802
        self, request: pb.MoveLeaderRequest, context: grpc.aio.ServicerContext
    ) -> pb.MoveLeaderResponse:
        async with grpc_errors(context):
            await self._server.move_leader(request.targetID)
            resp = pb.MoveLeaderResponse()
            self._server.fill_header(resp.header)
            return resp

    async def HashKV(self, request: pb.HashKVRequest, context: grpc.aio.ServicerContext) -> pb.HashKVResponse:  # noqa: N802
        async with grpc_errors(context):
            resp = self._server.hash_kv(request.revision)
            self._server.fill_header(resp.header)
            return resp

"""The member's side of etcdpy.internal.Worker, registered on its gRPC server only when read
workers are configured: Stats (is_worker false: tests tell the member's connections from a
worker's by it) and ReadIndex, the same read index the workers get over their control
sockets (control.py; cheaper for a loaded member than a gRPC call), for tools and tests.
"""

from __future__ import annotations

import os

import grpc

from etcdpy._pb.workerpb import worker_pb2, worker_pb2_grpc
from etcdpy.server.api.errors import grpc_errors
from etcdpy.server.api.interceptor import ClientServices
from etcdpy.server.etcdserver import EtcdServer


class MemberWorkerService(worker_pb2_grpc.WorkerServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def ReadIndex(  # noqa: N802
        self, request: worker_pb2.ReadIndexRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.ReadIndexResponse:
        # The very barrier a linearizable Range waits on here, so its errors (no leader,
        # timeout, stopped) reach the worker's client with the member's code and words.
        async with grpc_errors(context):
            await self._server.linearizable_barrier()
        return worker_pb2.ReadIndexResponse(applied_index=self._server.applied_index,
                                            raft_term=self._server.term)

    async def Stats(  # noqa: N802
        self, request: worker_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.StatsResponse:
        return worker_pb2.StatsResponse(pid=os.getpid(), is_worker=False)


def register(server: EtcdServer, services: ClientServices) -> None:
    """On the member's client server, behind the same checks as etcd's own services."""
    worker_pb2_grpc.add_WorkerServicer_to_server(MemberWorkerService(server), services)

"""etcdserverpb.Maintenance: status, hashes, alarms, defragmentation, snapshots, move-leader.

* `Hash` is etcdpy's own backend hash (`etcdpy.server.backend.backend_hash`): equal on members
  holding the same applied history, not comparable with etcd's bbolt hash. `HashKV` hashes the
  revision database exactly as etcd does and is comparable.
* `Defragment` compacts the state env's file while the member serves (`backend.defragment`).
* `Snapshot` streams a compacted, consistent copy of the state env in 32 KiB chunks with
  etcd's framing (`remaining_bytes`, then a last chunk holding the SHA-256 of the content,
  which `etcdctl snapshot save` stores and `python -m etcdpy.utl snapshot restore` checks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

import grpc

from etcdpy import ETCD_CLUSTER_VERSION
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.server import backend
from etcdpy.server.api.errors import grpc_errors
from etcdpy.server.etcdserver import EtcdServer

# etcd sends its storage version (the cluster version, major.minor.0) with each chunk.
SNAPSHOT_VERSION: Final = ETCD_CLUSTER_VERSION


class MaintenanceServicer(pb_grpc.MaintenanceServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        # One defragmentation at a time: a second request waits for the first, as in etcd.
        self._defrag_lock = asyncio.Lock()

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

    async def Hash(self, request: pb.HashRequest, context: grpc.aio.ServicerContext) -> pb.HashResponse:  # noqa: N802
        # One read transaction on the loop thread: the header's revision is the hashed one.
        resp = pb.HashResponse(hash=backend.backend_hash(self._server.state_env))
        self._server.fill_header(resp.header)
        return resp

    async def Defragment(  # noqa: N802
        self, request: pb.DefragmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.DefragmentResponse:
        async with self._defrag_lock:
            await backend.defragment(self._server.state_env)
        resp = pb.DefragmentResponse()
        self._server.fill_header(resp.header)
        return resp

    async def Snapshot(  # noqa: N802
        self, request: pb.SnapshotRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SnapshotResponse]:
        header = pb.ResponseHeader()
        self._server.fill_header(header)
        first = True
        async for blob, remaining in backend.snapshot_chunks(self._server.state_env):
            resp = pb.SnapshotResponse(remaining_bytes=remaining, blob=blob,
                                       version=SNAPSHOT_VERSION)
            if first:  # the copy is taken after this header: it holds at least its revision
                resp.header.CopyFrom(header)
                first = False
            yield resp

"""etcdserverpb.KV: validate, call the server, fill the header."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy._pb.internalpb import internal_pb2 as internalpb
from etcdpy.server import errors
from etcdpy.server.api import validate
from etcdpy.server.api.errors import grpc_errors
from etcdpy.server.etcdserver import EtcdServer


class KVWrites:
    """What Put, DeleteRange and Txn do between etcd's interceptors and the reply: validate,
    call the server, fill the header. Raises EtcdError. The servicer and the read workers'
    batched writes (etcdpy.worker.writes) both call these, so both answer alike."""

    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def put(self, request: pb.PutRequest) -> pb.PutResponse:
        validate.check_put(request)
        resp = await self._server.put(request)
        self._server.fill_header(resp.header)
        return resp

    async def delete_range(self, request: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        validate.check_delete(request)
        resp = await self._server.delete_range(request)
        self._server.fill_header(resp.header)
        return resp

    # The same two without a coroutine: `done` gets the response or the EtcdError (raised
    # here instead when the request is refused before it is proposed).

    def put_then(self, request: pb.PutRequest, done: Callable[[Any], None]) -> None:
        validate.check_put(request)
        self._server.propose_then(internalpb.InternalRequest(put=request),
                                  lambda result: done(self._with_header(result)))

    def delete_range_then(self, request: pb.DeleteRangeRequest,
                          done: Callable[[Any], None]) -> None:
        validate.check_delete(request)
        self._server.propose_then(internalpb.InternalRequest(delete_range=request),
                                  lambda result: done(self._with_header(result)))

    def _with_header(self, result: Any) -> Any:
        if not isinstance(result, BaseException):
            self._server.fill_header(result.header)
        return result

    async def txn(self, request: pb.TxnRequest) -> pb.TxnResponse:
        validate.check_txn(request, self._server.max_txn_ops)
        resp = await self._server.txn(request)
        self._server.fill_header(resp.header)
        return resp


class KVServicer(pb_grpc.KVServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._writes = KVWrites(server)

    async def Range(self, request: pb.RangeRequest, context: grpc.aio.ServicerContext) -> pb.RangeResponse:  # noqa: N802
        async with grpc_errors(context):
            validate.check_range(request)
            if self._server.is_learner and not request.serializable:
                raise errors.NotSupportedForLearner()
            resp = await self._server.range(request)
            self._server.fill_header(resp.header)
            return resp

    async def Put(self, request: pb.PutRequest, context: grpc.aio.ServicerContext) -> pb.PutResponse:  # noqa: N802
        async with grpc_errors(context):
            return await self._writes.put(request)

    async def DeleteRange(  # noqa: N802
        self, request: pb.DeleteRangeRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteRangeResponse:
        async with grpc_errors(context):
            return await self._writes.delete_range(request)

    async def Txn(self, request: pb.TxnRequest, context: grpc.aio.ServicerContext) -> pb.TxnResponse:  # noqa: N802
        async with grpc_errors(context):
            return await self._writes.txn(request)

    async def Compact(  # noqa: N802
        self, request: pb.CompactionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompactionResponse:
        async with grpc_errors(context):
            resp = await self._server.compact(request)
            self._server.fill_header(resp.header)
            return resp

"""The methods a worker answers itself: KV/Range (when it can answer exactly as the member
would) and Stats. Everything else, and every Range it is unsure of, goes to the member.

A Range is passed to the member, not answered here, when:
* the request is larger than the member accepts, or does not parse, or is invalid: the
  member's interceptor and servicer give etcd's exact errors for those;
* it carries a token or `hasleader`: the member judges identities and leadership;
* auth is enabled (read in the same transaction as the range) or the view lags.
"""

from __future__ import annotations

import os

import grpc
from google.protobuf.message import DecodeError

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.workerpb import worker_pb2
from etcdpy.server import errors
from etcdpy.server.api import validate
from etcdpy.server.api.errors import grpc_errors

from .passthrough import Counters, PassThrough, fail_like
from .reader import StateReader, complete_header
from .readindex import ReadIndexBatcher
from .status import StatusView

RANGE_METHOD = "/etcdserverpb.KV/Range"
STATS_METHOD = "/etcdpy.internal.Worker/Stats"
# Metadata the member acts on before a Range reaches its servicer.
MEMBER_KEYS = frozenset({"token", "authorization", "hasleader"})


class LocalRange:
    def __init__(self, reader: StateReader, read_index: ReadIndexBatcher, status: StatusView,
                 passthrough: PassThrough, cluster_id: int, member_id: int, max_bytes: int,
                 counters: Counters) -> None:
        self._reader = reader
        self._read_index = read_index
        self._status = status
        self._pass = passthrough
        self._cluster_id = cluster_id
        self._member_id = member_id
        self._max_bytes = max_bytes  # the member refuses a request larger than this
        self._counters = counters

    async def handle(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = self._answerable(raw, context)
        if request is None:
            return await self._pass.unary(RANGE_METHOD, raw, context)
        term = 0
        min_index = 0
        if not request.serializable:
            try:
                point = await self._read_index.wait()
            except grpc.aio.AioRpcError as error:
                await fail_like(context, error)
            min_index, term = point.applied_index, point.raft_term
        async with grpc_errors(context):
            try:
                read = self._reader.range(request, min_index)
            except errors.EtcdError:
                self._counters.local_ranges += 1  # answered here, with the member's error
                raise
        if read is None:
            return await self._pass.unary(RANGE_METHOD, raw, context)
        # A serializable read has no answer of its own: the newest term known (the member's
        # pushed status; terms only grow, so also any later one a ReadIndex answer or the
        # applied entries in the transaction carry).
        term = term or max(self._status.current.raft_term, self._read_index.latest_term,
                           read.raft_term)
        complete_header(read.response.header, self._cluster_id, self._member_id, term)
        self._counters.local_ranges += 1
        return read.response.SerializeToString()

    def _answerable(self, raw: bytes, context: grpc.aio.ServicerContext
                    ) -> pb.RangeRequest | None:
        if len(raw) > self._max_bytes:
            return None
        if any(key in MEMBER_KEYS for key, _ in context.invocation_metadata() or ()):
            return None
        try:
            request = pb.RangeRequest.FromString(raw)
            validate.check_range(request)
        except (DecodeError, errors.EtcdError):
            return None
        return request


def stats_handler(counters: Counters) -> grpc.RpcMethodHandler:
    async def stats(_request: worker_pb2.StatsRequest, _context: grpc.aio.ServicerContext
                    ) -> worker_pb2.StatsResponse:
        return worker_pb2.StatsResponse(
            pid=os.getpid(), is_worker=True, local_ranges=counters.local_ranges,
            proxied_calls=counters.proxied_calls, read_index_calls=counters.read_index_calls,
            batched_writes=counters.batched_writes)

    return grpc.unary_unary_rpc_method_handler(
        stats, request_deserializer=worker_pb2.StatsRequest.FromString,
        response_serializer=worker_pb2.StatsResponse.SerializeToString)


def local_handlers(local_range: LocalRange, counters: Counters,
                   writes: dict[str, grpc.RpcMethodHandler]) -> grpc.GenericRpcHandler:
    handlers = {
        RANGE_METHOD: grpc.unary_unary_rpc_method_handler(local_range.handle),
        STATS_METHOD: stats_handler(counters),
        **writes,
    }
    return _ByPath(handlers)


class _ByPath(grpc.GenericRpcHandler):
    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = handlers

    def service(self, handler_call_details: grpc.HandlerCallDetails
                ) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)

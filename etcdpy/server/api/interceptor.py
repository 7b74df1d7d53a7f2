"""Checks every client RPC passes through before its servicer, as etcd's v3rpc interceptors do.

* `hasleader: true` in the metadata (clientv3's WithRequireLeader; kube-apiserver sets it on
  every watch) makes a member without a leader answer `etcdserver: no leader` at once.
* A learner serves only serializable Range and Status (`rpc not supported for learner`);
  the Range check needs the request, so it is done in the KV servicer.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from etcdpy.server import errors
from etcdpy.server.api.metrics import GRPC_HANDLED, GrpcType
from etcdpy.server.etcdserver import EtcdServer

# etcd accepts requests up to --max-request-bytes plus this much gRPC framing and metadata.
GRPC_OVERHEAD_BYTES = 512 * 1024
# grpcio itself refuses anything this much over etcd's limit, before decoding it.
GRPCIO_SLACK_BYTES = 4 * 1024 * 1024

# What a learner may be asked (etcd's isRPCSupportedForLearner), besides serializable Range.
LEARNER_METHODS = frozenset({
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.Maintenance/Status",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
})


def _abort_handler(handler: grpc.RpcMethodHandler, error: errors.EtcdError) -> Any:
    code = grpc.StatusCode[error.code]

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, error.message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, error.message)
        yield  # pragma: no cover - makes this an async generator, as the stream RPC expects

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary)
    return grpc.stream_stream_rpc_method_handler(streaming)


class EtcdInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        if self._server.is_learner and method not in LEARNER_METHODS:
            return _abort_handler(handler, errors.NotSupportedForLearner())
        if self._server.leader_id == 0 and _has_leader_flag(details.invocation_metadata):
            return _abort_handler(handler, errors.NoLeader())
        if handler.unary_unary is not None:
            return _size_checked(handler, self._server.max_request_bytes + GRPC_OVERHEAD_BYTES,
                                 method)
        return _counted_stream(handler, method)


def _size_checked(handler: grpc.RpcMethodHandler, limit: int, method: str
                  ) -> grpc.RpcMethodHandler:
    """etcd's gRPC server refuses a request over --max-request-bytes + 512 KiB with grpc-go's
    own words; grpcio's limit (set a little higher, to bound memory) would say it differently.
    Every unary RPC's outcome is counted for `grpc_server_handled_total` on the way out."""
    inner = handler.unary_unary

    async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
        GRPC_HANDLED.started(method, GrpcType.UNARY)
        GRPC_HANDLED.received(method, GrpcType.UNARY)
        try:
            size = request.ByteSize()
            if size > limit:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"grpc: received message larger than max ({size} vs. {limit})")
            response = await inner(request, context)
        except BaseException:
            GRPC_HANDLED.handled(method, context.code() or grpc.StatusCode.UNKNOWN)
            raise
        GRPC_HANDLED.sent(method, GrpcType.UNARY)
        GRPC_HANDLED.handled(method, context.code() or grpc.StatusCode.OK)
        return response

    return grpc.unary_unary_rpc_method_handler(
        checked,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _counted_stream(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """go-grpc-prometheus's stream counters for a streaming RPC: started, every message
    received and sent, and the final code (a client hanging up is `Canceled`, as in grpc-go).
    Servicers that are async generators are wrapped message by message; others (which send
    with `context.write`) are counted as started and handled only."""
    client_streaming = handler.stream_unary is not None or handler.stream_stream is not None
    server_streaming = handler.unary_stream is not None or handler.stream_stream is not None
    grpc_type = GrpcType.of(client_streaming, server_streaming)
    inner = handler.stream_stream or handler.unary_stream or handler.stream_unary
    if not server_streaming or not inspect.isasyncgenfunction(inner):
        return handler

    async def requests(source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in source:
            GRPC_HANDLED.received(method, grpc_type)
            yield request

    async def counted(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        GRPC_HANDLED.started(method, grpc_type)
        if client_streaming:
            request = requests(request)
        else:
            GRPC_HANDLED.received(method, grpc_type)
        code: object = grpc.StatusCode.OK
        try:
            async for response in inner(request, context):
                GRPC_HANDLED.sent(method, grpc_type)
                yield response
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            GRPC_HANDLED.handled(method, context.code() or code, grpc_type)

    make = (grpc.stream_stream_rpc_method_handler if client_streaming
            else grpc.unary_stream_rpc_method_handler)
    return make(counted, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


def _has_leader_flag(metadata: Any) -> bool:
    return any(key == "hasleader" and value == "true" for key, value in metadata or ())


def requires_leader(context: grpc.aio.ServicerContext) -> bool:
    """The stream was opened with clientv3's WithRequireLeader."""
    return _has_leader_flag(context.invocation_metadata())


async def lost_leader(server: EtcdServer) -> None:
    """Returns once the member has had no leader for three election timeouts in a row."""
    period = server.settings.election_timeout_s
    without = 0
    while without < 3:
        await asyncio.sleep(period)
        without = without + 1 if server.leader_id == 0 else 0

"""Checks every client RPC passes through before its servicer, as etcd's v3rpc interceptors do.

* `hasleader: true` in the metadata (clientv3's WithRequireLeader; kube-apiserver sets it on
  every watch) makes a member without a leader answer `etcdserver: no leader` at once.
* A learner serves only serializable Range and Status (`rpc not supported for learner`);
  the Range check needs the request, so it is done in the KV servicer.
* Identity: the one place a request's auth token is taken from the metadata (`token`, or
  `authorization` as the gateway and Swagger clients send it) and handed to the server for
  the RPC's duration (`auth.CURRENT_TOKEN`). Membership changes and the maintenance RPCs
  etcd reserves for root are refused here, with the errors etcd gives for each.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from etcdpy.server import errors
from etcdpy.server.api.metrics import GRPC_HANDLED, GrpcType
from etcdpy.server.auth import CURRENT_TOKEN
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


# RPCs only a root user may call once auth is enabled, checked before the servicer runs.
MEMBERSHIP_METHODS = frozenset({
    "/etcdserverpb.Cluster/MemberAdd",
    "/etcdserverpb.Cluster/MemberRemove",
    "/etcdserverpb.Cluster/MemberUpdate",
    "/etcdserverpb.Cluster/MemberPromote",
})
# etcd 3.5's maintenance server checks these itself (and its errors reach clients unmapped).
MAINTENANCE_ADMIN_METHODS = frozenset({
    "/etcdserverpb.Maintenance/Defragment",
    "/etcdserverpb.Maintenance/Snapshot",
    "/etcdserverpb.Maintenance/Hash",
    "/etcdserverpb.Maintenance/HashKV",
    "/etcdserverpb.Maintenance/Downgrade",
})


def token_of(metadata: Any) -> str | None:
    """The auth token a client sent (clientv3 uses `token`; the gateway `authorization`)."""
    fallback = None
    for key, value in metadata or ():
        if key == "token":
            return str(value)
        if key == "authorization" and fallback is None:
            fallback = str(value)
    return fallback


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
        handler = _with_identity(handler, token_of(details.invocation_metadata),
                                 self._admin_check(method))
        if handler.unary_unary is not None:
            return _size_checked(handler, self._server.max_request_bytes + GRPC_OVERHEAD_BYTES,
                                 method)
        return _counted_stream(handler, method)


    def _admin_check(self, method: str) -> Callable[[str | None], None] | None:
        auth = self._server.auth
        if method in MEMBERSHIP_METHODS:
            return lambda token: auth.check_admin(auth.info(token))
        if method in MAINTENANCE_ADMIN_METHODS:
            return auth.check_maintenance_admin
        return None


def _with_identity(handler: grpc.RpcMethodHandler, token: str | None,
                   check: Callable[[str | None], None] | None) -> grpc.RpcMethodHandler:
    """Run the servicer with the request's token in `CURRENT_TOKEN` (the RPC's own task and
    the tasks it starts see it), after the method's admin check if it has one."""

    async def enter(context: grpc.aio.ServicerContext) -> None:
        CURRENT_TOKEN.set(token)
        if check is not None:
            try:
                check(token)
            except errors.EtcdError as error:
                await context.abort(grpc.StatusCode[error.code], error.message)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await enter(context)
        return await inner(request, context)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await enter(context)
        result = inner(request, context)
        if inspect.isasyncgen(result):
            try:
                async for item in result:
                    yield item
            finally:
                # the RPC ended (or was cancelled): let the servicer clean up now, not at GC
                await result.aclose()
        else:  # a servicer that writes through the context instead of yielding
            await result

    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        inner = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(unary, **kw)
    if handler.unary_stream is not None:
        inner = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(streaming, **kw)
    if handler.stream_unary is not None:
        inner = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(unary, **kw)
    inner = handler.stream_stream
    return grpc.stream_stream_rpc_method_handler(streaming, **kw)


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
        responses = inner(request, context)
        try:
            async for response in responses:
                GRPC_HANDLED.sent(method, grpc_type)
                yield response
        except (asyncio.CancelledError, GeneratorExit):  # the client went away
            code = grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            GRPC_HANDLED.handled(method, context.code() or code, grpc_type)
            await responses.aclose()  # the servicer cleans up now, not when collected

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

"""Pass a client's call to the member unchanged: raw bytes both ways, nothing decoded.

Every method a worker does not answer itself (writes, Watch, leases, membership, auth, ...)
goes through here, over one channel to the member's private Unix socket. What a client
could see is carried across, so it cannot tell a passed call from a direct one: the request
and response messages as bytes, the invocation metadata (token, authorization, hasleader,
...), the deadline, and on failure the status code, details and trailing metadata. A client
that cancels cancels the member's call; a member that cancels fails the client's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from .methods import SHAPES, Shape, shape_of

Metadata = tuple[tuple[str, Any], ...]


@dataclass(slots=True)
class Counters:
    """What a worker has done, for the Stats RPC (the tests count with it)."""

    local_ranges: int = 0
    proxied_calls: int = 0
    read_index_calls: int = 0
    batched_writes: int = 0


def outgoing_metadata(context: grpc.aio.ServicerContext) -> Metadata:
    """The client's metadata minus what the transport itself sets (grpcio refuses those)."""
    return tuple(
        (key, value) for key, value in context.invocation_metadata() or ()
        if key != "user-agent" and not key.startswith((":", "grpc-"))
    )


async def fail_like(context: grpc.aio.ServicerContext, error: grpc.aio.AioRpcError) -> NoReturn:
    """End the client's call with the member's status, word for word."""
    trailing = error.trailing_metadata()
    await context.abort(error.code(), error.details() or "", tuple(trailing or ()))
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


class PassThrough(grpc.GenericRpcHandler):
    """A generic handler answering every method by calling the member with it."""

    def __init__(self, channel: grpc.aio.Channel, counters: Counters) -> None:
        self._channel = channel
        self._counters = counters
        # Built once per method of the member's (a bounded table).
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails
                ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method not in SHAPES:
            # Every method the member serves is in the table; for any other grpcio answers
            # UNIMPLEMENTED "Method not found!" here, as the member's own grpcio does.
            # (Passing such a call as a bidirectional stream came back INTERNAL "Internal
            # error from Core" about one time in six.)
            return None
        handler = self._handlers.get(method)
        if handler is None:
            handler = self._handlers[method] = self._build(method)
        return handler

    def _build(self, method: str) -> grpc.RpcMethodHandler:
        shape = shape_of(method)
        # grpc.aio awaits a handler only if it is a coroutine (or async generator) function,
        # so these are real `async def`s, not lambdas.
        if shape is Shape.UNARY_UNARY:
            async def unary_unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                return await self.unary(method, request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary)
        if shape is Shape.STREAM_UNARY:
            async def stream_unary(requests: AsyncIterator[bytes],
                                   context: grpc.aio.ServicerContext) -> bytes:
                return await self._client_streamed(method, requests, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary)

        async def streamed(request: Any, context: grpc.aio.ServicerContext
                           ) -> AsyncIterator[bytes]:
            async for response in self._streamed(method, shape, request, context):
                yield response

        if shape is Shape.UNARY_STREAM:
            return grpc.unary_stream_rpc_method_handler(streamed)
        return grpc.stream_stream_rpc_method_handler(streamed)

    async def unary(self, method: str, request: bytes,
                    context: grpc.aio.ServicerContext) -> bytes:
        """Call a unary method on the member; also how the local Range passes what it won't
        answer."""
        self._counters.proxied_calls += 1
        call = self._channel.unary_unary(method)(
            request, metadata=outgoing_metadata(context), timeout=context.time_remaining())
        return await _finish(call, context)

    async def _client_streamed(self, method: str, requests: AsyncIterator[bytes],
                               context: grpc.aio.ServicerContext) -> bytes:
        self._counters.proxied_calls += 1
        call = self._channel.stream_unary(method)(
            requests, metadata=outgoing_metadata(context), timeout=context.time_remaining())
        return await _finish(call, context)

    async def _streamed(self, method: str, shape: Shape, request: Any,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        self._counters.proxied_calls += 1
        metadata, timeout = outgoing_metadata(context), context.time_remaining()
        call: Any
        if shape is Shape.UNARY_STREAM:
            call = self._channel.unary_stream(method)(request, metadata=metadata, timeout=timeout)
        else:
            call = self._channel.stream_stream(method)(request, metadata=metadata,
                                                       timeout=timeout)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as error:
            await fail_like(context, error)
        finally:
            call.cancel()  # a no-op once it ended; else the client went away: so does the call


async def _finish(call: Any, context: grpc.aio.ServicerContext) -> bytes:
    waiting: Awaitable[bytes] = call
    try:
        return await waiting
    except grpc.aio.AioRpcError as error:
        await fail_like(context, error)
    finally:
        call.cancel()

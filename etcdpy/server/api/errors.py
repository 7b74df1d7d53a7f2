"""Domain errors -> gRPC status with etcd's exact code and message, in one place."""

from __future__ import annotations

from types import TracebackType

import grpc

from etcdpy import logutil
from etcdpy.server.errors import EtcdError

log = logutil.get("api")


def status_code(error: EtcdError) -> grpc.StatusCode:
    return grpc.StatusCode[error.code]


class _StatusOfErrors:
    """The context manager `grpc_errors` returns. A class, not an `asynccontextmanager`: every
    unary call enters one, and an async generator per call cost several microseconds more."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> bool:
        if isinstance(error, EtcdError):
            await self._context.abort(status_code(error), error.message)  # raises AbortError
        return False


def grpc_errors(context: grpc.aio.ServicerContext) -> _StatusOfErrors:
    """Turn an EtcdError raised inside the block into the RPC's status."""
    return _StatusOfErrors(context)

"""Domain errors -> gRPC status with etcd's exact code and message, in one place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from etcdpy import logutil
from etcdpy.server.errors import EtcdError

log = logutil.get("api")


def status_code(error: EtcdError) -> grpc.StatusCode:
    return grpc.StatusCode[error.code]


@contextlib.asynccontextmanager
async def grpc_errors(context: grpc.aio.ServicerContext) -> Iterator[None]:  # type: ignore[misc]
    """Turn an EtcdError raised inside the block into the RPC's status."""
    try:
        yield
    except EtcdError as error:
        await context.abort(status_code(error), error.message)

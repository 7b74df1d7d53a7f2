"""Which call shape every gRPC method has, so the pass-through can register a matching handler.

The shapes come from the service descriptors of etcdpy's own protos (the private pool), plus
grpc.health.v1, which grpcio ships: every method the member serves. A worker does not pass
other methods on (the member would not know them either); `shape_of` calls them
bidirectional streams, the one shape whose frames fit any call.
"""

from __future__ import annotations

from enum import IntEnum

from etcdpy._pb import POOL
from etcdpy._pb.etcdserverpb import rpc_pb2  # noqa: F401 - registers the files in POOL
from etcdpy._pb.forwardpb import forward_pb2  # noqa: F401
from etcdpy._pb.v3electionpb import v3election_pb2  # noqa: F401
from etcdpy._pb.v3lockpb import v3lock_pb2  # noqa: F401
from etcdpy._pb.workerpb import worker_pb2  # noqa: F401


class Shape(IntEnum):
    UNARY_UNARY = 0
    UNARY_STREAM = 1
    STREAM_UNARY = 2
    STREAM_STREAM = 3

    @staticmethod
    def of(client_streaming: bool, server_streaming: bool) -> Shape:
        return Shape(int(client_streaming) * 2 + int(server_streaming))


_FILES = (
    "etcdpy/_pb/etcdserverpb/rpc.proto",
    "etcdpy/_pb/forwardpb/forward.proto",
    "etcdpy/_pb/v3electionpb/v3election.proto",
    "etcdpy/_pb/v3lockpb/v3lock.proto",
    "etcdpy/_pb/workerpb/worker.proto",
)
_HEALTH = {
    "/grpc.health.v1.Health/Check": Shape.UNARY_UNARY,
    "/grpc.health.v1.Health/Watch": Shape.UNARY_STREAM,
}


def _table() -> dict[str, Shape]:
    shapes = dict(_HEALTH)
    for name in _FILES:
        for service in POOL.FindFileByName(name).services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                shapes[path] = Shape.of(method.client_streaming, method.server_streaming)
    return shapes


SHAPES: dict[str, Shape] = _table()


def shape_of(method: str) -> Shape:
    return SHAPES.get(method, Shape.STREAM_STREAM)

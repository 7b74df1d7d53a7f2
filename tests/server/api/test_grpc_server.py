"""GenericOnly: services registered through it answer as before, with no registered methods."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.server.api.grpc_server import GenericOnly


class _Recorder:
    def __init__(self) -> None:
        self.generic: list[Any] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.registered.append(service)


class _OneKey(pb_grpc.KVServicer):
    async def Range(self, request: pb.RangeRequest, context: Any) -> pb.RangeResponse:  # noqa: N802
        response = pb.RangeResponse(count=1)
        response.kvs.add(key=request.key, value=b"v")
        return response


def test_the_generated_registration_keeps_only_the_generic_handler() -> None:
    recorder = _Recorder()
    pb_grpc.add_KVServicer_to_server(_OneKey(), GenericOnly(recorder))  # type: ignore[arg-type]
    assert recorder.registered == []
    assert len(recorder.generic) == 1


def test_a_service_registered_generically_answers_and_unknown_methods_are_unimplemented() -> None:
    async def scenario() -> None:
        server = grpc.aio.server()
        pb_grpc.add_KVServicer_to_server(_OneKey(), GenericOnly(server))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                response = await pb_grpc.KVStub(channel).Range(pb.RangeRequest(key=b"k"))
                assert [(kv.key, kv.value) for kv in response.kvs] == [(b"k", b"v")]
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await pb_grpc.WatchStub(channel).Watch(iter(())).read()
                assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await server.stop(None)

    asyncio.run(scenario())

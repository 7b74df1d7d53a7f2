"""ClientServices: every etcd method registered through it is served (as a generic handler,
with no registered methods), and its checks pick the handler a call gets."""

from __future__ import annotations

import asyncio
import tempfile
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy._pb.v3electionpb import v3election_pb2, v3election_pb2_grpc
from etcdpy._pb.v3lockpb import v3lock_pb2, v3lock_pb2_grpc
from etcdpy.server.api.grpc_server import RELAYED_SERVERS, ClientServers
from etcdpy.server.api.interceptor import ClientServices
from etcdpy.server.auth import CURRENT_TOKEN


def _stand_in_server(**state: Any) -> Any:
    """What ClientServices reads of the EtcdServer (its checks run per call)."""
    return SimpleNamespace(max_request_bytes=1024, is_learner=False, leader_id=1,
                           auth=SimpleNamespace(), **state)


def _register_all(services: ClientServices) -> None:
    for name in ("KV", "Watch", "Lease", "Cluster", "Maintenance", "Auth"):
        add = getattr(pb_grpc, f"add_{name}Servicer_to_server")
        add(getattr(pb_grpc, f"{name}Servicer")(), services)
    v3election_pb2_grpc.add_ElectionServicer_to_server(v3election_pb2_grpc.ElectionServicer(),
                                                       services)
    v3lock_pb2_grpc.add_LockServicer_to_server(v3lock_pb2_grpc.LockServicer(), services)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), services)


def test_every_method_of_every_client_service_is_served() -> None:
    services = ClientServices(_stand_in_server())
    _register_all(services)
    expected = {
        f"/{service.full_name}/{method.name}"
        for descriptor in (pb.DESCRIPTOR, v3election_pb2.DESCRIPTOR, v3lock_pb2.DESCRIPTOR)
        for service in descriptor.services_by_name.values()
        for method in service.methods
    }
    # etcd 3.5's: KV 5, Watch 1, Lease 5, Cluster 5, Maintenance 8, Auth 17, Election 5, Lock 2
    assert len(expected) == 48
    assert expected <= services.methods()
    assert "/grpc.health.v1.Health/Check" in services.methods()


def _details(method: str, *metadata: tuple[str, str]) -> Any:
    return SimpleNamespace(method=method, invocation_metadata=tuple(metadata))


def test_learner_no_leader_and_token_choose_the_handler() -> None:
    server = _stand_in_server()
    services = ClientServices(server)
    _register_all(services)
    put, rng = "/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range"
    checked = services.service(_details(put))
    assert checked is not None
    assert services.service(_details("/etcdserverpb.KV/Nope")) is None

    server.is_learner = True
    learner_put = services.service(_details(put))
    assert learner_put is not checked
    assert services.service(_details(rng)) is services.service(_details(rng))  # Range allowed
    server.is_learner = False

    server.leader_id = 0
    assert services.service(_details(put)) is checked  # no hasleader flag: served
    no_leader = services.service(_details(put, ("hasleader", "true")))
    assert no_leader is not checked and no_leader is not learner_put

    async def token_seen() -> str | None:
        services.service(_details(put, ("token", "t0k")))
        return CURRENT_TOKEN.get()

    assert asyncio.run(token_seen()) == "t0k"


class _OneKey(pb_grpc.KVServicer):
    async def Range(self, request: pb.RangeRequest, context: Any) -> pb.RangeResponse:  # noqa: N802
        response = pb.RangeResponse(count=1)
        response.kvs.add(key=request.key, value=CURRENT_TOKEN.get().encode())
        return response


def test_a_real_server_answers_through_it_and_counts_nothing_it_does_not_serve() -> None:
    async def scenario() -> None:
        server = grpc.aio.server()
        services = ClientServices(_stand_in_server())
        pb_grpc.add_KVServicer_to_server(_OneKey(), services)
        server.add_generic_rpc_handlers((services,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                kv = pb_grpc.KVStub(channel)
                response = await kv.Range(pb.RangeRequest(key=b"k"), metadata=(("token", "abc"),))
                assert [(x.key, x.value) for x in response.kvs] == [(b"k", b"abc")]
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await kv.Range(pb.RangeRequest(key=b"k" * (1024 + 513 * 1024)))
                assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "received message larger than max" in (raised.value.details() or "")
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await pb_grpc.WatchStub(channel).Watch(iter(())).read()
                assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_every_client_server_serves_the_same_services_on_its_own_socket() -> None:
    """The member's servers (what the shared client port relays to, in turn): each one
    answers on its own Unix socket, from the one ClientServices."""

    async def scenario() -> None:
        services = ClientServices(_stand_in_server())
        pb_grpc.add_KVServicer_to_server(_OneKey(), services)
        servers = ClientServers([], services)
        with tempfile.TemporaryDirectory() as directory:
            paths = servers.add_unix_sockets(directory)
            assert len(set(paths)) == RELAYED_SERVERS > 1
            assert paths[0].endswith("/grpc.sock")  # the member's own (gateway, workers)
            await servers.start()
            try:
                for index, path in enumerate(paths):
                    async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
                        response = await pb_grpc.KVStub(channel).Range(
                            pb.RangeRequest(key=b"k"), metadata=(("token", f"t{index}"),))
                        assert response.kvs[0].value == f"t{index}".encode()
            finally:
                await servers.stop(None)

    asyncio.run(scenario())

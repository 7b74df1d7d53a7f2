"""The client gRPC server: every etcd service on the client listeners, with etcd's limits."""

from __future__ import annotations

import asyncio
import os
from typing import Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy._pb.forwardpb import forward_pb2_grpc as forward_grpc
from etcdpy._pb.v3electionpb import v3election_pb2_grpc as election_grpc
from etcdpy._pb.v3lockpb import v3lock_pb2_grpc as lock_grpc
from etcdpy.server.api.auth import AuthServicer
from etcdpy.server.api.cluster import ClusterServicer
from etcdpy.server.api.election import ElectionServicer
from etcdpy.server.api.interceptor import (
    GRPC_OVERHEAD_BYTES,
    GRPCIO_SLACK_BYTES,
    ClientServices,
)
from etcdpy.server.api.kv import KVServicer
from etcdpy.server.api.leader_forward import LeaderForwardServicer
from etcdpy.server.api.lease import LeaseServicer
from etcdpy.server.api.lock import LockServicer
from etcdpy.server.api.maintenance import MaintenanceServicer
from etcdpy.server.api.watch import WatchServicer
from etcdpy.server.etcdserver import EtcdServer


def server_options(max_request_bytes: int, keepalive_min_time_s: float,
                   reuse_port: bool = False) -> list[tuple[str, int]]:
    """etcd's limits as grpcio options. `reuse_port` only where read workers bind the same
    client port (otherwise a second server on the port must fail, as etcd's does)."""
    min_ping_ms = int(keepalive_min_time_s * 1000)
    return [
        # The interceptor answers etcd's error up to GRPCIO_SLACK_BYTES over the limit.
        ("grpc.max_receive_message_length",
         max_request_bytes + GRPC_OVERHEAD_BYTES + GRPCIO_SLACK_BYTES),
        ("grpc.max_send_message_length", 2**31 - 1),
        # Clients such as kube-apiserver ping every 30 s; grpcio's default policy (5 min)
        # would answer them with GOAWAY "too_many_pings". etcd allows one every 5 s.
        ("grpc.http2.min_ping_interval_without_data_ms", min_ping_ms),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", min_ping_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_time_ms", 2 * 60 * 60 * 1000),
        ("grpc.keepalive_timeout_ms", 20 * 1000),
        ("grpc.so_reuseport", int(reuse_port)),
    ]


# How many gRPC servers take the connections the client ports relay (see ClientServers).
RELAYED_SERVERS: Final = 8


class ClientServers:
    """The member's client gRPC servers: several grpc.aio servers on one event loop, all
    serving the same `ClientServices`, each on a Unix socket of its own; the shared client
    ports relay connections to each in turn.

    Why several: a grpc.aio server takes in one new call at a time. Its accept loop asks the
    C core for the next call only after the event loop has run the previous one's wake-up,
    so on a busy loop calls queue in the C core while the member could batch them: with one
    server a put round had ~9 proposals for 256 waiting clients. Measured on one member, 256
    clients on 16 connections: 4 servers, put +50%, range +43% over one; 8 servers over 4
    (bench, two runs each): range +21%, serializable range +27%, Txn put +9%, watch +9%, put
    and lease keep-alives unchanged; 12 did no better than 8. An idle server costs nothing
    measurable (same RSS, no CPU), since all of them share grpc.aio's one poller.

    A gRPC-only client port (--listen-client-http-urls) is bound by the first server alone:
    several servers on one TCP port need SO_REUSEPORT, which would let a second etcdpy bind
    the same port instead of failing as etcd does."""

    def __init__(self, options: list[tuple[str, int]], services: grpc.GenericRpcHandler,
                 count: int = RELAYED_SERVERS) -> None:
        assert count >= 1
        self._servers = [grpc.aio.server(options=options) for _ in range(count)]
        for grpc_server in self._servers:
            grpc_server.add_generic_rpc_handlers((services,))

    def add_unix_sockets(self, directory: str) -> list[str]:
        """Each server listens on a socket of its own in `directory`; the first path is the
        member's own socket (the gateway, v2 emulation and read workers call it)."""
        paths = []
        for index, grpc_server in enumerate(self._servers):
            path = os.path.join(directory, "grpc.sock" if index == 0 else f"grpc-{index}.sock")
            grpc_server.add_insecure_port(f"unix:{path}")
            paths.append(path)
        return paths

    def add_insecure_port(self, address: str) -> int:
        """A TCP address, bound by the first server (see the class docstring)."""
        return self._servers[0].add_insecure_port(address)

    async def start(self) -> None:
        for grpc_server in self._servers:
            await grpc_server.start()

    async def stop(self, grace: float | None) -> None:
        await asyncio.gather(*(s.stop(grace) for s in self._servers))


def build(server: EtcdServer, max_request_bytes: int, keepalive_min_time_s: float = 5.0,
          reuse_port: bool = False
          ) -> tuple[ClientServers, health.aio.HealthServicer, ClientServices]:
    """The client gRPC servers, their health servicer, and the services object further
    services register into (read workers' member service) to get the same checks.
    `reuse_port`: read workers bind the gRPC-only client ports beside the member."""
    services = ClientServices(server)
    pb_grpc.add_KVServicer_to_server(KVServicer(server), services)
    pb_grpc.add_WatchServicer_to_server(WatchServicer(server), services)
    pb_grpc.add_LeaseServicer_to_server(LeaseServicer(server), services)
    forward_grpc.add_LeaderForwardServicer_to_server(LeaderForwardServicer(server), services)
    pb_grpc.add_ClusterServicer_to_server(ClusterServicer(server), services)
    pb_grpc.add_MaintenanceServicer_to_server(MaintenanceServicer(server), services)
    election_grpc.add_ElectionServicer_to_server(ElectionServicer(server), services)
    lock_grpc.add_LockServicer_to_server(LockServicer(server), services)
    pb_grpc.add_AuthServicer_to_server(AuthServicer(server), services)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, services)
    servers = ClientServers(server_options(max_request_bytes, keepalive_min_time_s, reuse_port),
                            services)
    return servers, health_servicer, services


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

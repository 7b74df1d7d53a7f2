"""The composition root: from a validated Config to a serving member.

The only module that wires layers together: opens the data dir, builds the storage, the
Raft core and its driver, the server facade and the gRPC servers, and runs them until
SIGTERM or SIGINT, then shuts down in order (stop accepting, stop the node, close storage).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from etcdpy import ETCD_SERVER_VERSION, __version__, eventloop, gctuning, logutil, testdefects
from etcdpy.cluster.bootstrap import (
    BootstrapError,
    bootstrap_or_restart,
    load_members,
    load_removed,
    new_cluster,
)
from etcdpy.cluster.discovery import ERR_DUPLICATE_ID, ERR_FULL_CLUSTER, DiscoveryError
from etcdpy.cluster.discovery_bootstrap import DiscoverySettings, discover_initial_cluster
from etcdpy.cluster.discovery_v3 import V3DiscoveryConfig, endpoints_of
from etcdpy.cluster.membership import Member, format_id
from etcdpy.config import Config
from etcdpy.netshare import ListenError, RelayMode, SharedPort, SharedPortOptions
from etcdpy.peer.http import MemberInfo, PeerHttpHandler
from etcdpy.peer.transport import GrpcTransport
from etcdpy.raft import RaftConfig, RawNode
from etcdpy.server.api import grpc_server
from etcdpy.server.api.gateway import Gateway
from etcdpy.server.api.http import ClientHttpHandler, Endpoints
from etcdpy.server.api.metrics import ServerMetrics
from etcdpy.server.api.v2keys import DEFAULT_STORE_PREFIX, V2Keys
from etcdpy.server.auth import AuthStore
from etcdpy.server.auth_jwt import AuthOptionsError, token_provider
from etcdpy.server.etcdserver import EtcdServer, MemberRemoved, ServerSettings
from etcdpy.server.membership import MembershipView
from etcdpy.server.raft_node import RaftNode
from etcdpy.server.snapshots import SnapshotImages
from etcdpy.sockdir import SocketDir
from etcdpy.storage.env import EnvOptions, MemberEnvs, member_dir_exists
from etcdpy.storage.lease import Lessor
from etcdpy.storage.mvcc.kvstore import KVStore
from etcdpy.storage.raft_log import LmdbRaftStorage
from etcdpy.worker import service as worker_service
from etcdpy.worker.control import ReadIndexAnswers
from etcdpy.worker.pool import ReadWorkers, WorkerSettings
from etcdpy.worker.status import MemberStatus
from etcdpy.worker.writes import WriteAnswers

log = logutil.get("")

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024  # etcd's DefaultQuotaBytes
# How a shared client port relays gRPC to the server. scripts/bench_client_port.py found
# ASYNCIO and PROCESS within noise of each other (both 0.8-0.95 of a gRPC-only port on 2 busy
# cores, SPLICE a little behind); ASYNCIO needs no extra process per port. The variable lets
# an operator with spare cores choose PROCESS.
CLIENT_RELAY = RelayMode[os.environ.get("ETCDPY_CLIENT_RELAY", "ASYNCIO")]


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if host == "localhost":
        # Go's listener (and so etcd) binds the IPv4 loopback for "localhost"; grpc would
        # pick whichever address the resolver lists first, sometimes only ::1.
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _request_timeout_s(cfg: Config) -> float:
    # etcd: 5 s plus twice the election timeout.
    return 5.0 + 2 * cfg.election_timeout / 1000


def _retention(cfg: Config) -> float:
    value = cfg.auto_compaction_retention_value()
    return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)


def run(cfg: Config) -> None:
    logutil.setup(cfg.log_level)
    try:
        defects = testdefects.from_environ()
    except testdefects.UnknownDefectError as error:
        log.fatal("invalid test defects", error=str(error))
        sys.exit(1)
    for line in testdefects.startup_warnings(defects, cfg.unsafe_no_fsync):
        log.warning(line)
    try:
        eventloop.run(_serve(cfg, defects))
    except DiscoveryError as error:
        _discovery_failed(cfg, error)
    except BootstrapError as error:
        # etcd's two lines for a cluster it cannot start, then exit 1.
        log.warning("failed to start etcd", error=str(error))
        log.fatal("discovery failed", error=str(error))
        sys.exit(1)


def _discovery_failed(cfg: Config, error: DiscoveryError) -> None:
    """etcdmain's reaction to a failed discovery: its warnings, then exit 1."""
    token = cfg.discovery or cfg.discovery_token
    if error.cause == ERR_FULL_CLUSTER and cfg.discovery and cfg.discovery_fallback == "proxy":
        log.warning("discovery cluster is full, falling back to proxy",
                    **{"fallback-proxy": "proxy", "error": str(error)})
        # etcd would now run a v2 proxy; etcdpy has none, so it says so and stops.
        log.fatal("etcdpy does not support the v2 proxy that --discovery-fallback=proxy "
                  "starts when the discovery cluster is full; use --discovery-fallback=exit "
                  "(or a new discovery token)", error=str(error))
        sys.exit(1)
    if error.cause != ERR_FULL_CLUSTER:
        log.warning("failed to start etcd", error=str(error))
    if error.cause == ERR_DUPLICATE_ID:
        log.warning("member has been registered with discovery service",
                    name=cfg.name, **{"discovery-token": token, "error": error.cause})
        log.warning("but could not find valid cluster configuration",
                    **{"data-dir": cfg.resolved_data_dir})
        log.warning("check data dir if previous bootstrap succeeded")
        log.warning("or use a new discovery token if previous bootstrap failed")
    else:
        log.warning("failed to bootstrap; discovery token was already used",
                    **{"discovery-token": token, "error": str(error)})
        log.warning("do not reuse discovery token; generate a new one to bootstrap a cluster")
    sys.exit(1)


def discovery_settings(cfg: Config) -> DiscoverySettings:
    """The bootstrap source the flags name, for `discover_initial_cluster`."""
    v3 = None
    if cfg.discovery_endpoints:
        v3 = V3DiscoveryConfig(
            token=cfg.discovery_token,
            endpoints=endpoints_of(cfg.discovery_endpoints),
            dial_timeout_s=cfg.discovery_dial_timeout.total_seconds(),
            request_timeout_s=cfg.discovery_request_timeout.total_seconds(),
            keepalive_time_s=cfg.discovery_keepalive_time.total_seconds(),
            keepalive_timeout_s=cfg.discovery_keepalive_timeout.total_seconds(),
            insecure_transport=cfg.discovery_insecure_transport,
            insecure_skip_tls_verify=cfg.discovery_insecure_skip_tls_verify,
            cert_file=cfg.discovery_cert,
            key_file=cfg.discovery_key,
            cacert_file=cfg.discovery_cacert,
            user=cfg.discovery_user,
            password=cfg.discovery_password,
        )
    return DiscoverySettings(
        name=cfg.name,
        advertise_peer_urls=tuple(str(u) for u in cfg.initial_advertise_peer_urls),
        initial_cluster=cfg.initial_cluster or cfg.initial_cluster_from_name(cfg.name),
        initial_cluster_token=cfg.initial_cluster_token,
        discovery_url=cfg.discovery,
        discovery_proxy=cfg.discovery_proxy,
        srv_domain=cfg.discovery_srv,
        srv_name=cfg.discovery_srv_name,
        v3=v3,
    )


async def _serve(cfg: Config, defects: testdefects.Defect) -> None:
    data_dir = cfg.resolved_data_dir
    log.info(
        "starting an etcd server",
        **{
            "etcd-version": ETCD_SERVER_VERSION,
            "etcdpy-version": __version__,
            "name": cfg.name,
            "data-dir": data_dir,
            "listen-client-urls": [str(u) for u in cfg.listen_client_urls],
            "advertise-client-urls": [str(u) for u in cfg.advertise_client_urls],
            "initial-cluster": cfg.initial_cluster,
            "heartbeat-interval": f"{cfg.heartbeat_interval}ms",
            "election-timeout": f"{cfg.election_timeout}ms",
        },
    )
    quota = cfg.effective_quota_backend_bytes or DEFAULT_QUOTA_BYTES
    settings = discovery_settings(cfg)
    initial_cluster, token = settings.initial_cluster, settings.initial_cluster_token
    if cfg.is_new_cluster and not member_dir_exists(data_dir):
        # Discovery (only for a member without a data dir, as etcd) and the check of the
        # clustering flags both happen before anything is written to the data dir.
        if settings.discovers:
            initial_cluster, token = await asyncio.to_thread(discover_initial_cluster,
                                                             settings)
        new_cluster(cfg.name, initial_cluster, token, list(settings.advertise_peer_urls))
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    envs = MemberEnvs(data_dir, EnvOptions(quota_backend_bytes=quota,
                                            unsafe_no_fsync=cfg.unsafe_no_fsync))
    try:
        await _serve_member(cfg, envs, quota, initial_cluster, token, defects)
    finally:
        envs.close()


async def _serve_member(cfg: Config, envs: MemberEnvs, quota: int, initial_cluster: str,
                        token: str, defects: testdefects.Defect) -> None:
    raft_storage = LmdbRaftStorage(envs.raft)
    identity = bootstrap_or_restart(
        envs,
        raft_storage,
        cfg.name,
        initial_cluster,
        token,
        [str(u) for u in cfg.initial_advertise_peer_urls],
        existing=not cfg.is_new_cluster,
    )
    member_id = identity.member_id
    log.info(
        "starting local member" if identity.is_new else "restarting local member",
        **{"local-member-id": format_id(member_id),
           "cluster-id": format_id(identity.cluster_id)},
    )

    store = KVStore(envs.state)
    images = SnapshotImages(envs.member_dir / "snap", envs.state)
    images.recover(raft_storage.snapshot().metadata, store.consistent_index)
    store.refresh()
    lessor = Lessor(time.monotonic, cfg.min_lease_ttl_seconds)
    with store.read() as view:
        lessor.recover(view.leases())
    log.info("kvstore restored", **{"current-rev": store.current_rev})
    membership = MembershipView(load_members(envs), load_removed(envs))

    try:
        tokens = token_provider(cfg.auth_token, float(cfg.auth_token_ttl))
    except (AuthOptionsError, OSError, ValueError) as error:
        raise BootstrapError(str(error)) from None  # etcd refuses to start the same way
    auth = AuthStore(envs.state, tokens, cfg.bcrypt_cost)
    settings = ServerSettings(
        member_id=member_id,
        cluster_id=identity.cluster_id,
        max_txn_ops=cfg.max_txn_ops,
        max_request_bytes=cfg.max_request_bytes,
        request_timeout_s=_request_timeout_s(cfg),
        election_timeout_s=cfg.election_timeout / 1000,
        min_lease_ttl_s=cfg.min_lease_ttl_seconds,
        quota_backend_bytes=quota,
        snapshot_count=max(cfg.snapshot_count, 1),
        snapshot_catchup_entries=cfg.experimental_snapshot_catchup_entries,
        auto_compaction_mode=cfg.auto_compaction_mode or "periodic",
        auto_compaction_retention=_retention(cfg),
        watch_progress_notify_interval_s=(
            cfg.experimental_watch_progress_notify_interval.total_seconds()
        ),
        name=cfg.name,
        client_urls=tuple(str(u) for u in cfg.advertise_client_urls),
        max_learners=getattr(cfg, "experimental_max_learners", 1),
        strict_reconfig_check=cfg.strict_reconfig_check,
        auth_token_ttl_s=float(cfg.auth_token_ttl),
        bcrypt_cost=cfg.bcrypt_cost,
        unsafe_read_local=bool(defects & testdefects.Defect.READ_LOCAL),
    )
    server = EtcdServer(settings, store, lessor, membership,
                        lambda: (envs.state.file_bytes(), envs.state.in_use_bytes()), images,
                        auth)
    transport = GrpcTransport(
        member_id,
        identity.cluster_id,
        server,
        listen_urls=[str(u) for u in cfg.listen_peer_urls],
        advertise_urls=[str(u) for u in cfg.initial_advertise_peer_urls],
        http_handler=PeerHttpHandler(
            lambda: identity.cluster_id,
            lambda: [MemberInfo(m.id, m.name, m.peer_urls, m.client_urls, m.is_learner)
                     for m in membership.sorted()],
        ),
        snapshot_dir=str(envs.member_dir / "snap" / "incoming"),
    )
    _follow_membership(membership, transport, member_id)
    server.peer_active_since = transport.active_since
    rawnode = RawNode(
        RaftConfig(
            id=member_id,
            election_tick=cfg.election_ticks,
            heartbeat_tick=1,
            # From the Raft snapshot, not the state's applied index: the entries in between
            # are delivered again so the core rebuilds its configuration from them; the
            # applier skips what the state already holds.
            applied=raft_storage.snapshot().metadata.index,
            # Off only for the read-local test defect: a partitioned leader must keep
            # believing it leads, so that its local reads are stale (testdefects.py).
            check_quorum=not (defects & testdefects.Defect.READ_LOCAL),
            pre_vote=cfg.pre_vote,
            max_size_per_msg=1 << 20,
            max_inflight_msgs=512,  # etcd's maxInflightMsgs
            rng=random.Random(),
        ),
        raft_storage,
        logger=_raft_logger(),
    )
    node = RaftNode(rawnode, raft_storage, transport, server, cfg.heartbeat_interval / 1000,
                    unsafe_forget_vote=bool(defects & testdefects.Defect.VOTE_NOT_PERSISTED))
    server.node = node
    server.raft_log = raft_storage
    if identity.voters == (member_id,):
        # A sole voter need not wait out an election timeout (etcd fast-forwards its
        # election ticks for the same reason): it campaigns once its log is applied.
        server.campaign_after_index = max(raft_storage.hard_state().commit, 1)

    try:
        await transport.start()
    except ListenError as error:
        raise BootstrapError(str(error)) from None  # etcd: its two lines, then exit 1
    for url in cfg.listen_peer_urls:
        log.info("serving peer traffic", address=_host_port(str(url)))
    # Read workers on gRPC-only client ports bind them too (see ReadWorkers).
    reuse_port = bool(cfg.etcdpy_read_workers and cfg.listen_client_http_urls)
    client, health, services = grpc_server.build(
        server, cfg.max_request_bytes, cfg.grpc_keepalive_min_time.total_seconds(), reuse_port)
    if cfg.etcdpy_read_workers:
        worker_service.register(server, services)
    ports: ClientPorts | None = None
    try:
        ports = ClientPorts(cfg, server, client, envs.state.path, quota)
        ports.bind()  # now, so that a port in use stops this member before it joins
    except ListenError as error:
        if ports is not None:
            await ports.stop()
        await client.stop(grace=0)
        await transport.stop()
        raise BootstrapError(str(error)) from None
    server.start()

    async def serve_clients() -> None:
        # Like etcd, clients are served once this member has published its name and client
        # URLs through Raft (so a cluster without quorum refuses connections, as etcd's does).
        await server.published
        await client.start()
        await ports.start()
        await health.set("", grpc_server.SERVING)
        log.info("ready to serve client requests")
        gctuning.freeze_after_startup()
        for url in cfg.listen_client_urls:
            log.info("serving client traffic insecurely; this is strongly discouraged!",
                     address=_host_port(str(url)))

    serving = asyncio.ensure_future(serve_clients())
    try:
        await _run_until_stopped(server, client, health, ports, serving)
    finally:
        serving.cancel()
        await ports.stop()
        await transport.stop()
        log.info("stopped serving", **{"local-member-id": format_id(member_id)})


class ClientPorts:
    """The client listeners: gRPC and HTTP/1.1 share each --listen-client-urls port (gRPC is
    relayed to the server's private Unix socket), unless --listen-client-http-urls moves HTTP
    to ports of its own, when gRPC binds the client ports directly; --listen-metrics-urls
    serve /metrics and the health checks."""

    def __init__(self, cfg: Config, server: EtcdServer, client: grpc_server.ClientServers,
                 state_dir: Path, quota: int) -> None:
        self._socket_dir = SocketDir("client")
        self._sock_dir = self._socket_dir.path
        # the member's gRPC servers, one socket each; the first is the member's own
        unix_paths = client.add_unix_sockets(self._sock_dir)
        sock_path = unix_paths[0]
        self._worker_settings = WorkerSettings(
            count=cfg.etcdpy_read_workers,
            member_unix=sock_path,
            member_writes=os.path.join(self._sock_dir, "writes.sock"),
            sock_dir=self._sock_dir,
            state_dir=str(state_dir),
            map_size=EnvOptions(quota_backend_bytes=quota).state_map_bytes(),
            cluster_id=server.cluster_id,
            member_id=server.member_id,
            max_request_bytes=cfg.max_request_bytes,
            keepalive_min_time_s=cfg.grpc_keepalive_min_time.total_seconds(),
            relay=SharedPortOptions().process_relay,
        )
        self._workers: list[ReadWorkers] = []
        self._member_status = lambda: MemberStatus(server.term, server.leader_id,
                                                   server.is_learner)
        self._read_index = ReadIndexAnswers(server)
        self._write_answers = WriteAnswers(server)
        self._gateway = Gateway(f"unix:{sock_path}")
        self._v2keys: V2Keys | None = None
        if cfg.enable_v2:
            self._v2keys = V2Keys(f"unix:{sock_path}", server.settings.cluster_id,
                                  cfg.experimental_enable_v2v3 or DEFAULT_STORE_PREFIX)
        handler = ClientHttpHandler(server, self._gateway, ServerMetrics(server),
                                    v2keys=self._v2keys)
        options = SharedPortOptions(relay=CLIENT_RELAY)
        self._fronts: list[SharedPort] = []
        self._client_fronts: list[SharedPort] = []  # the ones read workers share
        self._grpc_ports: list[str] = []  # gRPC-only client ports (read workers bind them too)
        shared = not cfg.listen_client_http_urls
        for url in cfg.listen_client_urls:
            if shared:
                host, port = _split_host_port(str(url))
                front = SharedPort(host, port, unix_paths, handler, options)
                self._fronts.append(front)
                self._client_fronts.append(front)
            else:
                self._grpc_ports.append(self._grpc_port(client, str(url)))
        for url in cfg.listen_client_http_urls:
            host, port = _split_host_port(str(url))
            self._fronts.append(SharedPort(host, port, sock_path, handler, options))
        for url in cfg.listen_metrics_urls:
            host, port = _split_host_port(str(url))
            self._fronts.append(SharedPort(host, port, sock_path,
                                           handler.for_endpoints(Endpoints.METRICS), options))

    def _grpc_port(self, client: grpc_server.ClientServers, url: str) -> str:
        """Have gRPC bind a gRPC-only client port; ListenError (Go's words) if it cannot."""
        address = _host_port(url)
        try:
            bound = client.add_insecure_port(address)
        except RuntimeError:  # grpcio's "Failed to bind to address ..."
            bound = 0
        if bound == 0:
            self._socket_dir.close()  # no stop() for a half-built one
            raise ListenError.probing(*_split_host_port(url))
        return address

    def bind(self) -> None:
        """Take every HTTP-capable client address (they listen once start() serves them)."""
        for front in self._fronts:
            front.bind()

    async def start(self) -> None:
        for front in self._fronts:
            await front.start()
        if self._worker_settings.count:
            await self._write_answers.start(self._worker_settings.member_writes)
            for front in self._client_fronts:
                workers = ReadWorkers(self._worker_settings, front.listener, front.serve_other,
                                      self._member_status, self._read_index.on_message)
                workers.start()
                self._workers.append(workers)
            for address in self._grpc_ports:
                workers = ReadWorkers(self._worker_settings, None, _no_http,
                                      self._member_status, self._read_index.on_message,
                                      grpc_address=address)
                workers.start()
                self._workers.append(workers)
            log.info("started read workers", **{
                "read-workers": self._worker_settings.count,
                "ports": len(self._client_fronts) + len(self._grpc_ports)})

    async def stop(self) -> None:
        for workers in self._workers:  # first: they hand connections to the fronts
            await workers.stop()
        self._workers = []
        await self._read_index.stop()
        await self._write_answers.stop()
        for front in self._fronts:
            await front.stop()  # also right for a front that never started
        self._fronts = []
        await self._gateway.close()
        if self._v2keys is not None:
            await self._v2keys.close()
        self._socket_dir.close()


async def _no_http(conn: socket.socket, _prefix: bytes) -> None:
    """A worker on a gRPC-only port accepts no HTTP/1.1 connection to hand back."""
    conn.close()


def _split_host_port(url: str) -> tuple[str, int]:
    hostport = _host_port(url)
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def _raft_logger() -> Any:
    raft_log = logutil.get("raft")
    return lambda line: raft_log.info(line)


def _follow_membership(membership: MembershipView, transport: GrpcTransport,
                       member_id: int) -> None:
    """Keep the transport's peers equal to the other members (a remote, learnt from a member
    not yet known here, becomes a peer when the membership adds it, or goes when it is
    removed)."""

    def sync(members: dict[int, Member]) -> None:
        known = transport.peers()
        for peer_id, m in members.items():
            if peer_id == member_id:
                continue
            if peer_id not in known:
                transport.add_peer(peer_id, m.peer_urls)
            elif tuple(known[peer_id]) != tuple(m.peer_urls):
                transport.update_peer(peer_id, m.peer_urls)
        for peer_id in known:
            if peer_id not in members:
                asyncio.ensure_future(transport.remove_peer(peer_id))
        for peer_id in transport.remotes():  # learnt from a member since removed
            if peer_id in membership.removed:
                asyncio.ensure_future(transport.remove_peer(peer_id))

    membership.on_change = sync
    sync(dict(membership.members))


def _dump_tasks() -> None:
    """SIGUSR1: log where every asyncio task is waiting (a stuck member explains itself)."""
    for task in asyncio.all_tasks():
        frames = [f"{f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}"
                  for f in task.get_stack(limit=8)]
        log.info("task", name=task.get_name(), coro=str(task.get_coro())[:120], stack=frames)


def _failed(task: asyncio.Future[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


async def _run_until_stopped(server: EtcdServer, client: Any, health: Any,
                             ports: ClientPorts, serving: asyncio.Future[None]) -> None:
    """Until a signal, the server's failure, or a failure to serve clients (`serving`, the
    task that starts the client listeners once the member has published)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    stopping = asyncio.ensure_future(stop.wait())
    waiting: set[asyncio.Future[Any]] = {stopping, server.failed, serving}
    while not (stopping.done() or server.failed.done() or _failed(serving)):
        _done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if _failed(serving) and not server.failed.done():
        # etcd's reaction to a client listener that fails: fatal, exit 1. A member that ran
        # on would hold its peers' quorum while no client can reach it.
        stopping.cancel()
        await ports.stop()
        await client.stop(grace=0)
        await server.stop()
        log.fatal("listener failed", error=str(serving.exception()))
        raise SystemExit(1)
    if server.failed.done():
        error = server.failed.exception()
        await ports.stop()
        await client.stop(grace=0)
        await server.stop()
        if isinstance(error, MemberRemoved):
            log.warning("the local member has been removed from the cluster; shutting down",
                        error=str(error))
            return
        log.error("etcdpy stopped on an internal error", error=repr(error), exc_info=False)
        raise SystemExit(2)
    stopping.cancel()
    log.info("received signal; shutting down")
    await health.set("", grpc_server.NOT_SERVING)
    await ports.stop()
    await client.stop(grace=1.0)
    await server.stop()

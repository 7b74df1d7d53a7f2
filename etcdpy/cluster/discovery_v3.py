"""etcd 3.6's v3 discovery (`--discovery-token`, `--discovery-endpoints`): the registry is an
ordinary etcd v3 cluster (etcd or etcdpy), reached over gRPC.

Keys, as etcd 3.6 uses them: `/_etcd/registry/<token>/_config/size` (written beforehand by the
operator) and `/_etcd/registry/<token>/members/<member-id-hex>` = `name=peer-url,...`. A member
reads the size, refuses to join when `size` others registered first, puts its key, and watches
the members prefix from the revision after its read until `size` are registered; the first
`size` by create revision are the cluster. Unreachable endpoints are retried with etcd's
backoff until the same total timeout as v2 discovery (`discovery.retry_timeout_from_env`).
"""

from __future__ import annotations

import posixpath
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import grpc

from etcdpy import logutil
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.cluster.discovery import (
    ERR_BAD_SIZE_KEY,
    ERR_FULL_CLUSTER,
    ERR_SIZE_NOT_FOUND,
    ERR_TOO_MANY_RETRIES,
    MAX_BACKOFF_EXPONENT,
    DiscoveryError,
    retry_timeout_from_env,
)
from etcdpy.cluster.membership import format_id, parse_initial_cluster

log = logutil.get("discovery")

DISCOVERY_PREFIX = "/_etcd/registry"
ERR_INVALID_PEER_URL = "discovery: invalid peer URL"
MAX_WATCH_EVENTS = 1_000_000  # bounds the waiting loop


def cluster_size_key(token: str) -> str:
    return posixpath.join(DISCOVERY_PREFIX, token, "_config/size")


def member_prefix(token: str) -> str:
    return posixpath.join(DISCOVERY_PREFIX, token, "members")


def member_key(token: str, member_id: int) -> str:
    return posixpath.join(member_prefix(token), format_id(member_id))


def _prefix_end(key: bytes) -> bytes:
    end = bytearray(key)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


@dataclass(frozen=True, slots=True)
class V3DiscoveryConfig:
    """The `--discovery-*` settings of etcd 3.6 (timeouts in seconds)."""

    token: str
    endpoints: tuple[str, ...]
    dial_timeout_s: float = 2.0
    request_timeout_s: float = 5.0
    keepalive_time_s: float = 2.0
    keepalive_timeout_s: float = 6.0
    insecure_transport: bool = True
    insecure_skip_tls_verify: bool = False
    cert_file: str = ""
    key_file: str = ""
    cacert_file: str = ""
    user: str = ""
    password: str = ""

    def __post_init__(self) -> None:
        assert self.token and self.endpoints, "v3 discovery needs a token and endpoints"


@dataclass(slots=True)
class _Registered:
    """The registrations seen so far, kept sorted by create revision (etcd's clusterInfo)."""

    token: str
    members: list[tuple[int, str, str]] = field(default_factory=list)  # (rev, key, value)

    def add(self, key: str, value: str, create_rev: int) -> None:
        if not key.startswith(member_prefix(self.token)):
            log.warning("invalid peer registry key", memberKey=key, memberInfo=value)
            return
        if "=" not in value:
            log.warning("invalid peer info returned from discovery service",
                        memberKey=key, memberInfo=value)
            return
        if any(k == key for _, k, _ in self.members):
            log.warning("found duplicate peer from discovery service",
                        memberKey=key, memberInfo=value)
            return
        self.members.append((create_rev, key, value))
        self.members.sort()
        log.info("found peer from discovery service", memberKey=key, memberInfo=value)

    def __len__(self) -> int:
        return len(self.members)

    def initial_cluster(self, size: int) -> str:
        text = ",".join(v for _, _, v in self.members[:size])
        try:
            parse_initial_cluster(text)
        except ValueError:
            raise DiscoveryError(ERR_INVALID_PEER_URL) from None
        return text


class _Retry(Exception):
    pass


class V3Discovery:
    def __init__(self, cfg: V3DiscoveryConfig, member_id: int,
                 retry_timeout_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.member_id = member_id
        self.retries = 0
        timeout = retry_timeout_from_env() if retry_timeout_s is None else retry_timeout_s
        self._deadline = time.monotonic() + timeout
        self._sleep = sleep
        self._channels = [self._channel(e) for e in cfg.endpoints]
        self._token_metadata: tuple[tuple[str, str], ...] = ()

    def _channel(self, endpoint: str) -> grpc.Channel:
        scheme, sep, rest = endpoint.partition("://")
        target = rest if sep else endpoint
        options = [
            ("grpc.keepalive_time_ms", int(self.cfg.keepalive_time_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.cfg.keepalive_timeout_s * 1000)),
            ("grpc.initial_reconnect_backoff_ms", 200),
        ]
        secure = (sep and scheme == "https") or not self.cfg.insecure_transport
        if not secure:
            return grpc.insecure_channel(target, options=options)

        def read(path: str) -> bytes | None:
            if not path:
                return None
            with open(path, "rb") as f:
                return f.read()

        if self.cfg.insecure_skip_tls_verify:
            # grpcio offers no way to skip verifying the server's certificate.
            log.warning("--discovery-insecure-skip-tls-verify is not supported; the discovery "
                        "server's certificate is verified", endpoint=endpoint)
        creds = grpc.ssl_channel_credentials(read(self.cfg.cacert_file),
                                             read(self.cfg.key_file), read(self.cfg.cert_file))
        return grpc.secure_channel(target, creds, options=options)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    # --- requests, each tried on every endpoint in turn -------------------------------

    def _unary(self, call: Callable[[grpc.Channel, tuple[tuple[str, str], ...]], object]) -> object:
        last: grpc.RpcError | None = None
        for channel in self._channels:
            try:
                grpc.channel_ready_future(channel).result(timeout=self.cfg.dial_timeout_s)
                self._authenticate(channel)
                return call(channel, self._token_metadata)
            except grpc.FutureTimeoutError:
                continue
            except grpc.RpcError as err:
                # etcd retries every failed request (a refused one too, e.g. for lack of
                # credentials), logging why, until its retries run out.
                last = err
                continue
        raise _Retry(last.details() if last is not None else "context deadline exceeded")

    def _authenticate(self, channel: grpc.Channel) -> None:
        if not self.cfg.user or self._token_metadata:
            return
        user, _, password = self.cfg.user.partition(":")
        resp = pb_grpc.AuthStub(channel).Authenticate(
            pb.AuthenticateRequest(name=user, password=self.cfg.password or password),
            timeout=self.cfg.request_timeout_s)
        self._token_metadata = (("token", resp.token),)

    def _range(self, key: str, prefix: bool) -> pb.RangeResponse:
        request = pb.RangeRequest(key=key.encode())
        if prefix:
            request.range_end = _prefix_end(key.encode())

        def call(channel: grpc.Channel, md: tuple[tuple[str, str], ...]) -> object:
            return pb_grpc.KVStub(channel).Range(request, timeout=self.cfg.request_timeout_s,
                                                 metadata=md)

        resp = self._unary(call)
        assert isinstance(resp, pb.RangeResponse)
        return resp

    # --- the protocol --------------------------------------------------------------------

    def join_cluster(self, config: str) -> str:
        self.check_cluster()
        self.register_self(config)
        registered, size, rev = self.check_cluster()
        if len(registered) < size:
            self.wait_peers(registered, size, rev)
        return registered.initial_cluster(size)

    def _backoff(self, step: str) -> None:
        self.retries += 1
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DiscoveryError(ERR_TOO_MANY_RETRIES)
        pause = min(float(1 << min(self.retries, MAX_BACKOFF_EXPONENT)), left)
        log.warning("retry connecting to discovery service", reason=step, backoff=f"{pause:g}s")
        self._sleep(pause)

    def cluster_size(self) -> int:
        resp = self._range(cluster_size_key(self.cfg.token), prefix=False)
        if not resp.kvs:
            raise DiscoveryError(ERR_SIZE_NOT_FOUND)
        try:
            size = int(resp.kvs[0].value.decode())
        except (ValueError, UnicodeDecodeError):
            raise DiscoveryError(ERR_BAD_SIZE_KEY) from None
        if size <= 0:
            raise DiscoveryError(ERR_BAD_SIZE_KEY)
        return size

    def check_cluster(self) -> tuple[_Registered, int, int]:
        while True:
            try:
                size = self.cluster_size()
                resp = self._range(member_prefix(self.cfg.token), prefix=True)
                break
            except _Retry as err:
                log.warning("failed to get cluster size from discovery service",
                            clusterSizeKey=cluster_size_key(self.cfg.token), error=str(err))
                self._backoff("cluster status check")
        self.retries = 0
        registered = _Registered(self.cfg.token)
        for kv in resp.kvs:
            registered.add(kv.key.decode().strip(), kv.value.decode().strip(),
                           kv.create_revision)
        mine = member_key(self.cfg.token, self.member_id)
        for i, (_, key, _) in enumerate(registered.members):
            if key == mine:
                break
            if i >= size - 1:
                raise DiscoveryError(ERR_FULL_CLUSTER)
        return registered, size, resp.header.revision

    def register_self(self, config: str) -> None:
        key = member_key(self.cfg.token, self.member_id)
        request = pb.PutRequest(key=key.encode(), value=config.encode())

        def call(channel: grpc.Channel, md: tuple[tuple[str, str], ...]) -> object:
            return pb_grpc.KVStub(channel).Put(request, timeout=self.cfg.request_timeout_s,
                                               metadata=md)

        while True:
            try:
                self._unary(call)
                break
            except _Retry as err:
                log.warning("failed to register members itself to the discovery service",
                            memberKey=key, error=str(err))
                self._backoff("register member itself")
        self.retries = 0
        log.info("register member itself successfully", memberKey=key, memberInfo=config)

    def wait_peers(self, registered: _Registered, size: int, rev: int) -> None:
        prefix = member_prefix(self.cfg.token).encode()
        log.info("waiting for peers from discovery service",
                 clusterSize=size, **{"found-peers": len(registered)})
        seen = 0
        while len(registered) < size:
            try:
                for event in self._watch(prefix, rev + 1):
                    seen += 1
                    assert seen <= MAX_WATCH_EVENTS, "discovery waited too long"
                    rev = max(rev, event.kv.mod_revision)
                    if event.type == event.PUT:
                        registered.add(event.kv.key.decode().strip(),
                                       event.kv.value.decode().strip(), event.kv.create_revision)
                    if len(registered) >= size:
                        break
            except grpc.RpcError as err:
                log.warning("error while waiting for peers", error=str(err.details()))
                self._backoff("waiting for other nodes")
        log.info("found all needed peers from discovery service",
                 clusterSize=size, **{"found-peers": len(registered)})

    def _watch(self, prefix: bytes, start_rev: int) -> Iterator[object]:
        """Events under `prefix` from `start_rev`, from the first endpoint that answers."""
        requests: queue.Queue[pb.WatchRequest | None] = queue.Queue(maxsize=2)
        requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=prefix, range_end=_prefix_end(prefix), start_revision=start_rev)))

        def outgoing() -> Iterator[pb.WatchRequest]:
            while (item := requests.get()) is not None:
                yield item

        channel = self._channels[self.retries % len(self._channels)]
        stream = pb_grpc.WatchStub(channel).Watch(outgoing(), metadata=self._token_metadata)
        try:
            for resp in stream:
                if resp.canceled:
                    raise DiscoveryError(f"watch canceled: {resp.cancel_reason}")
                yield from resp.events
        finally:
            requests.put(None)
            stream.cancel()


def join_cluster(cfg: V3DiscoveryConfig, member_id: int, config: str,
                 retry_timeout_s: float | None = None) -> str:
    """etcd 3.6's v3discovery.JoinCluster: the initial cluster, or DiscoveryError."""
    d = V3Discovery(cfg, member_id, retry_timeout_s)
    try:
        cluster = d.join_cluster(config)
    except DiscoveryError as err:
        log.error("discovery failed to join cluster", cluster="", error=err.cause)
        raise
    finally:
        d.close()
    log.info("discovery joined cluster successfully", cluster=cluster)
    return cluster


def endpoints_of(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.strip() for v in values if v.strip())

"""`/metrics`: Prometheus text with etcd's metric names where the meaning is the same.

Values are read from the `EtcdServer` facade at scrape time (a collector, not counters
updated on the hot path), so serving metrics costs nothing between scrapes. The registry is
per member (not prometheus-client's global one) so that several members in one process, as in
tests, do not collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum

import grpc
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from etcdpy import ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION
from etcdpy._pb.etcdserverpb import rpc_pb2
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.etcdserver import EtcdServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


class _ServerCollector(Collector):
    def __init__(self, server: EtcdServer, keys_total: list[int]) -> None:
        self._server = server
        self._keys_total = keys_total  # refreshed by ServerMetrics.render before a scrape

    def collect(self) -> Iterator[Metric]:
        s = self._server
        node = s.node
        yield _gauge("etcd_server_has_leader",
                     "Whether or not a leader exists. 1 is existence, 0 is not.",
                     1 if s.leader_id != 0 else 0)
        yield _gauge("etcd_server_is_leader",
                     "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                     1 if s.is_leader else 0)
        yield _gauge("etcd_server_is_learner",
                     "Whether or not this member is a learner. 1 if is, 0 otherwise.",
                     1 if s.is_learner else 0)
        changes = CounterMetricFamily("etcd_server_leader_changes_seen",
                                      "The number of leader changes seen.")
        changes.add_metric([], s.leader_changes)
        yield changes
        # etcd exports these two "totals" as gauges (they are Raft indexes, set not added).
        yield _gauge("etcd_server_proposals_committed_total",
                     "The total number of consensus proposals committed.",
                     node.committed_index if node is not None else 0)
        yield _gauge("etcd_server_proposals_applied_total",
                     "The total number of consensus proposals applied.", s.applied_index)
        ident = GaugeMetricFamily("etcd_server_id", "Server or member ID in hexadecimal format. "
                                  "1 for 'server_id' label with current ID.",
                                  labels=["server_id"])
        ident.add_metric([f"{s.member_id:x}"], 1)
        yield ident
        version = GaugeMetricFamily("etcd_server_version", "Which version is running. "
                                    "1 for 'server_version' label with current version.",
                                    labels=["server_version"])
        version.add_metric([ETCD_SERVER_VERSION], 1)
        yield version
        cluster = GaugeMetricFamily("etcd_cluster_version", "Which version is running. "
                                    "1 for 'cluster_version' label with current cluster version",
                                    labels=["cluster_version"])
        cluster.add_metric([_minor(ETCD_CLUSTER_VERSION)], 1)
        yield cluster
        yield _gauge("etcd_server_quota_backend_bytes",
                     "Current backend storage quota size in bytes.",
                     s.settings.quota_backend_bytes)
        if node is not None:
            status = s.status()
            yield _gauge("etcd_mvcc_db_total_size_in_bytes",
                         "Total size of the underlying database physically allocated in bytes.",
                         status.dbSize)
            yield _gauge("etcd_mvcc_db_total_size_in_use_in_bytes",
                         "Total size of the underlying database logically in use in bytes.",
                         status.dbSizeInUse)
        header = pb.ResponseHeader()
        s.fill_header(header)
        yield _gauge("etcd_debugging_mvcc_current_revision",
                     "The current revision of store.", header.revision)
        yield _gauge("etcd_debugging_mvcc_keys_total",
                     "Total number of keys.", self._keys_total[0])


class _PlainCounter(Collector):
    def __init__(self, name: str, doc: str) -> None:
        self._name = name
        self._doc = doc
        self._value = 0

    def inc(self) -> None:
        self._value += 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._doc)
        family.add_metric([], self._value)
        yield family


class HealthChecks(Collector):
    """etcd 3.5.11+'s `etcd_server_healthcheck{type,name}` (1 if the last run of that /livez
    or /readyz check passed) and `etcd_server_healthchecks_total{type,name,status}`; a series
    appears once its check has run, as in etcd."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}
        self._counts: dict[tuple[str, str, str], int] = {}

    def record(self, check_type: str, name: str, ok: bool) -> None:
        self._last[(check_type, name)] = 1 if ok else 0
        key = (name, "success" if ok else "error", check_type)
        self._counts[key] = self._counts.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("etcd_server_healthcheck",
                                  "The result of each kind of healthcheck.",
                                  labels=["name", "type"])
        for (check_type, name), value in sorted(self._last.items()):
            gauge.add_metric([name, check_type], value)
        yield gauge
        total = CounterMetricFamily("etcd_server_healthchecks",
                                    "The total number of each kind of healthcheck.",
                                    labels=["name", "status", "type"])
        for labels, count in sorted(self._counts.items()):
            total.add_metric(list(labels), count)
        yield total


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _go_code_name(code: object) -> str:
    """grpc-go's spelling of a status code (go-grpc-prometheus labels use it)."""
    name = getattr(code, "name", "OK")
    if name == "CANCELLED":
        return "Canceled"
    return "OK" if name == "OK" else "".join(p.capitalize() for p in name.split("_"))


class GrpcType(StrEnum):
    """go-grpc-prometheus's `grpc_type` label."""

    UNARY = "unary"
    CLIENT_STREAM = "client_stream"
    SERVER_STREAM = "server_stream"
    BIDI_STREAM = "bidi_stream"

    @classmethod
    def of(cls, client_streaming: bool, server_streaming: bool) -> GrpcType:
        if client_streaming:
            return cls.BIDI_STREAM if server_streaming else cls.CLIENT_STREAM
        return cls.SERVER_STREAM if server_streaming else cls.UNARY


# The services etcd registers with go-grpc-prometheus before serving: their every method (and,
# for handled, every code) is exported from the start with value 0. Election and Lock are
# registered after that in etcd, so they appear only once called.
_PREREGISTERED = tuple(
    (rpc_pb2.DESCRIPTOR.services_by_name[name], None)
    for name in ("Auth", "Cluster", "KV", "Lease", "Maintenance", "Watch")
) + (
    # grpcio's health service has grown a List method grpc-go's (in etcd 3.5) does not have.
    (health_pb2.DESCRIPTOR.services_by_name["Health"], frozenset({"Check", "Watch"})),
)
_GO_CODES = tuple(_go_code_name(code) for code in grpc.StatusCode)

_Method = tuple[str, str, str]  # (grpc_method, grpc_service, grpc_type), label order


class GrpcServerMetrics(Collector):
    """go-grpc-prometheus's server counters as etcd exports them: `grpc_server_started_total`,
    `grpc_server_handled_total` (by code), `grpc_server_msg_received_total` and
    `grpc_server_msg_sent_total`, for unary and streaming RPCs. The client interceptor counts;
    plain dict increments on the loop thread, read at scrape time."""

    def __init__(self) -> None:
        self._started: dict[_Method, int] = {}
        self._received: dict[_Method, int] = {}
        self._sent: dict[_Method, int] = {}
        self._handled: dict[tuple[str, str, str, str], int] = {}
        for service, only in _PREREGISTERED:
            for m in service.methods:
                if only is not None and m.name not in only:
                    continue
                key = (m.name, service.full_name,
                       GrpcType.of(m.client_streaming, m.server_streaming).value)
                for table in (self._started, self._received, self._sent):
                    table[key] = 0
                for code in _GO_CODES:
                    self._handled[(code, *key)] = 0

    @staticmethod
    def _key(full_method: str, grpc_type: GrpcType) -> _Method:
        service, _, method = full_method.lstrip("/").partition("/")
        return (method, service, grpc_type.value)

    def started(self, full_method: str, grpc_type: GrpcType) -> None:
        key = self._key(full_method, grpc_type)
        self._started[key] = self._started.get(key, 0) + 1

    def received(self, full_method: str, grpc_type: GrpcType) -> None:
        key = self._key(full_method, grpc_type)
        self._received[key] = self._received.get(key, 0) + 1

    def sent(self, full_method: str, grpc_type: GrpcType) -> None:
        key = self._key(full_method, grpc_type)
        self._sent[key] = self._sent.get(key, 0) + 1

    def handled(self, full_method: str, code: object,
                grpc_type: GrpcType = GrpcType.UNARY) -> None:
        key = (_go_code_name(code), *self._key(full_method, grpc_type))
        self._handled[key] = self._handled.get(key, 0) + 1

    def counter(self, full_method: str, grpc_type: GrpcType) -> MethodCounter:
        """The counters of one method, with its labels worked out once (a call counts 4
        times; the client services build one per method when they are registered)."""
        return MethodCounter(self, self._key(full_method, grpc_type))

    def collect(self) -> Iterator[Metric]:
        per_method = ["grpc_method", "grpc_service", "grpc_type"]
        for name, doc, table in (
            ("grpc_server_started", "Total number of RPCs started on the server.",
             self._started),
            ("grpc_server_msg_received",
             "Total number of RPC stream messages received on the server.", self._received),
            ("grpc_server_msg_sent", "Total number of gRPC stream messages sent by the server.",
             self._sent),
        ):
            family = CounterMetricFamily(name, doc, labels=per_method)
            for labels, count in sorted(table.items()):
                family.add_metric(list(labels), count)
            yield family
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=["grpc_code", *per_method],
        )
        for labels, count in sorted(self._handled.items()):
            handled.add_metric(list(labels), count)
        yield handled


class MethodCounter:
    """`GrpcServerMetrics` counters for one method; the same tables, labels precomputed."""

    __slots__ = ("_handled", "_handled_keys", "_key", "_received", "_sent", "_started")

    def __init__(self, metrics: GrpcServerMetrics, key: _Method) -> None:
        self._key = key
        self._started = metrics._started
        self._received = metrics._received
        self._sent = metrics._sent
        self._handled = metrics._handled
        self._handled_keys = {code: (_go_code_name(code), *key) for code in grpc.StatusCode}

    def started(self) -> None:
        self._started[self._key] = self._started.get(self._key, 0) + 1

    def received(self) -> None:
        self._received[self._key] = self._received.get(self._key, 0) + 1

    def sent(self) -> None:
        self._sent[self._key] = self._sent.get(self._key, 0) + 1

    def handled(self, code: grpc.StatusCode) -> None:
        key = self._handled_keys[code]
        self._handled[key] = self._handled.get(key, 0) + 1


# One per process: the client services count, every metrics endpoint reports.
GRPC_HANDLED = GrpcServerMetrics()


class ServerMetrics:
    """The member's registry; `render()` answers a scrape."""

    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._keys_total = [0]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ServerCollector(server, self._keys_total))
        ProcessCollector(registry=self.registry)
        # Counters without prometheus-client's `_created` series, which etcd does not export.
        self.health_success = _PlainCounter("etcd_server_health_success",
                                            "The total number of successful health checks")
        self.health_failures = _PlainCounter("etcd_server_health_failures",
                                             "The total number of failed health checks")
        self.registry.register(self.health_success)
        self.registry.register(self.health_failures)
        self.health_checks = HealthChecks()
        self.registry.register(self.health_checks)
        self.registry.register(GRPC_HANDLED)

    async def render(self) -> bytes:
        # The key count needs a read; a serializable count-only Range over every key is the
        # facade's way to get it (etcd keeps a counter in its index, which we do not have).
        try:
            resp = await self._server.range(
                pb.RangeRequest(key=b"\0", range_end=b"\0", count_only=True, serializable=True)
            )
            self._keys_total[0] = resp.count
        except Exception:  # a failed read keeps the last known count; the scrape still works
            pass
        return generate_latest(self.registry)

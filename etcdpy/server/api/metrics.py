"""`/metrics`: Prometheus text with etcd's metric names where the meaning is the same.

Values are read from the `EtcdServer` facade at scrape time (a collector, not counters
updated on the hot path), so serving metrics costs nothing between scrapes. The registry is
per member (not prometheus-client's global one) so that several members in one process, as in
tests, do not collide.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from etcdpy import ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION
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


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _go_code_name(code: object) -> str:
    """grpc-go's spelling of a status code (go-grpc-prometheus labels use it)."""
    name = getattr(code, "name", "OK")
    if name == "CANCELLED":
        return "Canceled"
    return "OK" if name == "OK" else "".join(p.capitalize() for p in name.split("_"))


class GrpcHandled(Collector):
    """`grpc_server_handled_total`, counted by the client interceptor for every unary RPC,
    with go-grpc-prometheus's labels (etcd exports it that way)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str, str], int] = {}

    def handled(self, full_method: str, code: object) -> None:
        service, _, method = full_method.lstrip("/").partition("/")
        key = (_go_code_name(code), method, service, "unary")
        self._counts[key] = self._counts.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=["grpc_code", "grpc_method", "grpc_service", "grpc_type"],
        )
        for labels, count in sorted(self._counts.items()):
            family.add_metric(list(labels), count)
        yield family


# One per process: the interceptor counts, every metrics endpoint reports.
GRPC_HANDLED = GrpcHandled()


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

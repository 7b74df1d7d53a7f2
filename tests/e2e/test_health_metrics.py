"""/health, /livez, /readyz, /version and /metrics on the client port and on the listeners of
--listen-metrics-urls and --listen-client-http-urls, read with curl and Prometheus' parser."""

from __future__ import annotations

import base64
import signal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from etcdpy import ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION
from tests.e2e.cluster import FAST_TIMING, running_cluster, wait_for
from tests.e2e.gateway_client import curl
from tests.e2e.harness import Member, etcdctl, free_port, single_member

pytestmark = pytest.mark.e2e

HEALTHY = {"health": "true", "reason": ""}


def metrics(url: str) -> dict[str, float]:
    """Every sample without labels, by name; labelled ones as name{label=value}."""
    reply = curl(f"{url}/metrics", method="GET")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(reply.body):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def test_health_version_and_metrics_on_the_client_port(etcdpy_member: Member) -> None:
    url = etcdpy_member.client_url
    for query in ("", "?serializable=true", "?exclude=NOSPACE", "?serializable=true&exclude=NOSPACE"):
        reply = curl(f"{url}/health{query}", method="GET")
        assert (reply.status, reply.json()) == (200, HEALTHY), query
    assert curl(f"{url}/health", method="POST").status == 405
    assert curl(f"{url}/version", method="GET").json() == {
        "etcdserver": ETCD_SERVER_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION}
    for probe in ("/livez", "/readyz"):
        reply = curl(f"{url}{probe}", method="GET")
        assert (reply.status, reply.body) == (200, "ok"), probe
    assert curl(f"{url}/nothing", method="GET").status == 404

    before = metrics(url)
    for i in range(5):
        etcdctl([etcdpy_member.endpoint], "put", f"k{i}", "v")
    etcdctl([etcdpy_member.endpoint], "del", "k0")
    after = metrics(url)
    assert after["etcd_server_has_leader"] == 1
    assert after["etcd_server_is_leader"] == 1
    assert after["etcd_server_is_learner"] == 0
    assert after["etcd_server_leader_changes_seen_total"] == 1
    assert after["etcd_debugging_mvcc_keys_total"] == 4
    # Six writes were committed and applied between the scrapes (and their revisions made).
    assert after["etcd_server_proposals_committed_total"] >= before[
        "etcd_server_proposals_committed_total"] + 6
    assert after["etcd_server_proposals_applied_total"] >= before[
        "etcd_server_proposals_applied_total"] + 6
    assert after["etcd_debugging_mvcc_current_revision"] == before[
        "etcd_debugging_mvcc_current_revision"] + 6
    assert after["etcd_mvcc_db_total_size_in_bytes"] > 0
    assert after["process_resident_memory_bytes"] > 0
    assert after[f"etcd_server_version{{server_version={ETCD_SERVER_VERSION}}}"] == 1
    assert after["etcd_server_health_success_total"] >= 4  # the /health calls above
    assert not any(name.endswith("_created") for name in after)


def test_metrics_listener_serves_metrics_and_health_only(tmp_path: Path) -> None:
    port = free_port()
    member = single_member("etcdpy", tmp_path, extra_args=[
        "--listen-metrics-urls", f"http://127.0.0.1:{port}"])
    member.start()
    try:
        member.wait_serving()
        url = f"http://127.0.0.1:{port}"
        assert metrics(url)["etcd_server_has_leader"] == 1
        assert curl(f"{url}/health", method="GET").json() == HEALTHY
        assert curl(f"{url}/version", method="GET").status == 404
        reply = curl(f"{url}/v3/kv/range", "{}")
        assert reply.status == 404
        # etcd's metrics listeners are not wrapped in its CORS handler.
        assert "access-control-allow-origin" not in reply.headers
    finally:
        member.stop()


def test_client_http_urls_move_http_off_the_grpc_port(tmp_path: Path) -> None:
    http_port = free_port()
    member = single_member("etcdpy", tmp_path, extra_args=[
        "--listen-client-http-urls", f"http://127.0.0.1:{http_port}"])
    member.start()
    try:
        member.wait_serving()  # etcdctl (gRPC) on the client URL
        etcdctl([member.endpoint], "put", "moved", "yes")
        url = f"http://127.0.0.1:{http_port}"
        assert curl(f"{url}/health", method="GET").json() == HEALTHY
        reply = curl(f"{url}/v3/kv/range", f'{{"key":"{base64.b64encode(b"moved").decode()}"}}')
        assert base64.b64decode(reply.json()["kvs"][0]["value"]) == b"yes"
    finally:
        member.stop()


def test_health_without_a_leader_is_503_raft_no_leader(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 2, FAST_TIMING) as cluster:
        survivor, lost = cluster.members
        lost.signal(signal.SIGSTOP)  # its peer loses quorum and, by check-quorum, its leader
        try:
            def no_leader() -> bool:
                reply = curl(f"{survivor.client_url}/health", method="GET")
                return reply.status == 503 and reply.json() == {
                    "health": "false", "reason": "RAFT NO LEADER"}

            wait_for("/health to report no leader", no_leader)
            # A serializable check reads local state: healthy without a leader, as in etcd.
            reply = curl(f"{survivor.client_url}/health?serializable=true", method="GET")
            assert (reply.status, reply.json()) == (200, HEALTHY)
            assert curl(f"{survivor.client_url}/readyz", method="GET").status == 503
            assert curl(f"{survivor.client_url}/livez", method="GET").status == 200
            scraped = metrics(survivor.client_url)
            assert scraped["etcd_server_has_leader"] == 0
            assert scraped["etcd_server_health_failures_total"] >= 1
        finally:
            lost.signal(signal.SIGCONT)


def test_grpc_handled_total_counts_outcomes(etcdpy_member: Member) -> None:
    """kube-apiserver dashboards and etcd's alerts read grpc_server_handled_total by code."""
    ep = [etcdpy_member.endpoint]
    etcdctl(ep, "put", "k", "v")
    etcdctl(ep, "get", "k")
    future = etcdctl(ep, "get", "k", "--rev", "1000", check=False)
    assert "future revision" in future.stderr
    seen = metrics(etcdpy_member.client_url)
    base = "grpc_server_handled_total{grpc_code=%s,grpc_method=%s,grpc_service=%s,grpc_type=unary}"
    assert seen[base % ("OK", "Put", "etcdserverpb.KV")] >= 1
    assert seen[base % ("OK", "Range", "etcdserverpb.KV")] >= 1
    assert seen[base % ("OutOfRange", "Range", "etcdserverpb.KV")] >= 1

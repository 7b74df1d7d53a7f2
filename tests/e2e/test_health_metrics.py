"""/health, /livez, /readyz, /version and /metrics on the client port and on the listeners of
--listen-metrics-urls and --listen-client-http-urls, read with curl and Prometheus' parser."""

from __future__ import annotations

import base64
import select
import signal
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from etcdpy import ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION
from tests.e2e.cluster import FAST_TIMING, running_cluster, wait_for
from tests.e2e.gateway_client import curl
from tests.e2e.harness import Member, etcdctl, find_binary, free_port, single_member

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
        assert (reply.status, reply.body) == (200, "ok\n"), probe
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
            readyz = curl(f"{survivor.client_url}/readyz", method="GET")
            assert readyz.status == 503
            lines = readyz.body.split("\n")
            assert lines[:2] == ["[+]data_corruption ok", "[+]serializable_read ok"]
            assert lines[2].startswith("[-]linearizable_read failed: ")
            assert lines[3:] == ["[+]non_learner ok", "", ""]
            # The local checks pass: the member is alive, only not ready.
            for path in ("/livez", "/readyz?exclude=linearizable_read",
                         "/readyz/serializable_read"):
                reply = curl(f"{survivor.client_url}{path}", method="GET")
                assert (reply.status, reply.body) == (200, "ok\n"), path
            assert curl(f"{survivor.client_url}/readyz/linearizable_read",
                        method="GET").status == 503
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


def _grpc_series(url: str) -> dict[str, float]:
    return {name: value for name, value in metrics(url).items() if name.startswith("grpc_server")}


def _series(kind: str, method: str, service: str, grpc_type: str, code: str = "") -> str:
    labels = f"grpc_code={code}," if code else ""
    return (f"grpc_server_{kind}_total{{{labels}grpc_method={method},grpc_service={service},"
            f"grpc_type={grpc_type}}}")


def _watch_until_event(member: Member, key: str) -> None:
    """`etcdctl watch` until it prints the event of a put, then hang up (as a user does). The
    put comes first and the watch starts at revision 1, so the event is in its history."""
    binary = find_binary("etcdctl")
    assert binary
    etcdctl([member.endpoint], "put", key, "v")
    proc = subprocess.Popen([binary, "--endpoints", member.endpoint, "watch", key, "--rev", "1"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)  # bounded wait
        assert ready, "etcdctl watch printed nothing"
        assert proc.stdout.readline() == "PUT\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_stream_rpcs_are_counted_like_go_grpc_prometheus(etcdpy_member: Member,
                                                          tmp_path: Path) -> None:
    ep = [etcdpy_member.endpoint]
    url = etcdpy_member.client_url
    before = _grpc_series(url)
    _watch_until_event(etcdpy_member, "watched")
    lease = etcdctl(ep, "lease", "grant", "60").stdout.split()[1]
    etcdctl(ep, "lease", "keep-alive", "--once", lease)
    etcdctl(ep, "snapshot", "save", str(tmp_path / "s.db"))

    watch = ("Watch", "etcdserverpb.Watch", "bidi_stream")
    keepalive = ("LeaseKeepAlive", "etcdserverpb.Lease", "bidi_stream")
    snapshot = ("Snapshot", "etcdserverpb.Maintenance", "server_stream")

    def streams_finished() -> dict[str, float] | None:
        seen = _grpc_series(url)
        done = all(
            sum(v for k, v in seen.items()
                if k.startswith("grpc_server_handled_total") and f"grpc_method={m}," in k) >= 1
            for m, _, _ in (watch, keepalive, snapshot))
        return seen if done else None

    after = wait_for("the streams to be counted as handled", streams_finished)
    for rpc in (watch, keepalive, snapshot):
        assert after[_series("started", *rpc)] == before[_series("started", *rpc)] + 1, rpc
        assert after[_series("msg_received", *rpc)] >= 1, rpc
    assert after[_series("msg_sent", *watch)] >= 2  # the created reply and the event
    assert after[_series("msg_sent", *keepalive)] >= 1
    # The snapshot's chunks and its SHA-256 trailer, all sent and the stream ended cleanly.
    assert after[_series("msg_sent", *snapshot)] >= 2
    assert after[_series("handled", *snapshot, code="OK")] == 1
    # A unary RPC counts one message each way.
    grant = ("LeaseGrant", "etcdserverpb.Lease", "unary")
    assert after[_series("msg_received", *grant)] == after[_series("started", *grant)] >= 1
    assert after[_series("msg_sent", *grant)] >= 1


def test_grpc_series_are_the_ones_etcd_exports(real_etcd: Member, etcdpy_member: Member) -> None:
    """Every method of etcd's services is exported from the start (zero until called), with
    every code for handled, exactly as go-grpc-prometheus does in etcd."""
    want = set(_grpc_series(real_etcd.client_url))
    got = set(_grpc_series(etcdpy_member.client_url))
    assert got == want, (sorted(want - got)[:10], sorted(got - want)[:10])


def test_livez_and_readyz_as_etcd_3_5_11(etcdpy_member: Member) -> None:
    """etcd 3.5.1 answers 404 here (see the differential test below); etcd 3.5.11+ (we report
    3.5.17) serves named checks, their sub-paths, ?exclude= and ?verbose."""
    url = etcdpy_member.client_url
    ready = ["data_corruption", "serializable_read", "linearizable_read", "non_learner"]

    def get(path: str) -> tuple[int, str]:
        reply = curl(f"{url}{path}", method="GET")
        if reply.status == 200:
            assert reply.headers["content-type"] == "text/plain; charset=utf-8"
            assert reply.headers["x-content-type-options"] == "nosniff"
        return reply.status, reply.body

    assert get("/livez?verbose") == (200, "[+]serializable_read ok\nok\n")
    assert get("/readyz?verbose") == (200, "".join(f"[+]{c} ok\n" for c in ready) + "ok\n")
    assert get("/readyz?verbose=1&exclude=non_learner&exclude=nosuchcheck") == (
        200, "".join(f"[+]{c} ok\n" for c in ready[:3]) + "ok\n")
    for check in ready:
        assert get(f"/readyz/{check}") == (200, "ok\n")
        assert get(f"/readyz/{check}?verbose") == (200, f"[+]{check} ok\nok\n")
    assert get("/livez/serializable_read") == (200, "ok\n")
    assert get("/livez/linearizable_read")[0] == 404
    assert get("/readyz/")[0] == 404
    reply = curl(f"{url}/readyz", method="POST")
    assert (reply.status, reply.headers["allow"]) == (405, "GET")
    # Each check's last result and count, labelled as etcd 3.5.11+ labels them.
    seen = metrics(url)
    for check in ready:
        assert seen[f"etcd_server_healthcheck{{name={check},type=readyz}}"] == 1
        assert seen[f"etcd_server_healthchecks_total{{name={check},status=success,"
                    f"type=readyz}}"] >= 3
    assert seen["etcd_server_healthcheck{name=serializable_read,type=livez}"] == 1
    assert not any("status=error" in name for name in seen)


def test_health_answers_as_etcd(real_etcd: Member, etcdpy_member: Member) -> None:
    def answer(member: Member, path: str, method: str = "GET") -> tuple[int, str, str]:
        reply = curl(f"{member.client_url}{path}", method=method)
        return reply.status, reply.headers.get("content-type", ""), reply.body

    for path in ("/health", "/health?serializable=true", "/health?exclude=NOSPACE",
                 "/health?exclude=NOSPACE&exclude=CORRUPT&serializable=false"):
        assert answer(etcdpy_member, path) == answer(real_etcd, path), path
    assert answer(etcdpy_member, "/health", "POST") == answer(real_etcd, "/health", "POST")
    # etcd 3.5.1 has no /livez or /readyz (added in 3.5.11, which is what we follow).
    assert answer(real_etcd, "/livez")[0] == answer(real_etcd, "/readyz")[0] == 404

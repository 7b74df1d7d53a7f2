"""Static bootstrap of 3- and 5-member etcdpy clusters: what etcdctl and the peer port report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cluster import FAST_TIMING, running_cluster
from tests.e2e.harness import etcdctl

pytestmark = pytest.mark.e2e


def _curl(url: str) -> tuple[object, dict[str, str]]:
    """GET with curl, as an operator would: the JSON body and the response headers."""
    curl = shutil.which("curl")
    assert curl, "curl is not installed (scripts/test installs it)"
    out = subprocess.run([curl, "-sS", "-i", "--max-time", "5", url], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    status, *lines = head.splitlines()
    assert status.split()[1] == "200", out
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    assert headers["content-type"].startswith("application/json"), headers
    return json.loads(body), headers


@pytest.mark.parametrize("size", [3, 5])
def test_static_bootstrap_member_list_and_endpoint_status(tmp_path: Path, size: int) -> None:
    with running_cluster(tmp_path, size, FAST_TIMING) as cluster:
        lead = cluster.wait_leader()
        members = cluster.member_list()
        assert len(members) == size
        by_name = {m["name"]: m for m in members}
        assert set(by_name) == {m.name for m in cluster.members}
        for m in cluster.members:
            entry = by_name[m.name]
            assert entry["peerURLs"] == [m.peer_url]
            # A member publishes its client URLs through Raft once it serves.
            assert entry["clientURLs"] == [m.client_url]
            assert not entry.get("isLearner", False)

        # endpoint status --cluster asks every member the member list names.
        out = etcdctl([cluster.members[0].endpoint], "endpoint", "status", "--cluster",
                      "-w", "json").stdout
        statuses = json.loads(out)
        assert sorted(s["Endpoint"] for s in statuses) == sorted(m.client_url for m in cluster.members)
        leaders = {int(s["Status"].get("leader", 0)) for s in statuses}
        terms = {int(s["Status"]["raftTerm"]) for s in statuses}
        ids = {int(s["Status"]["header"]["member_id"]) for s in statuses}
        cluster_ids = {int(s["Status"]["header"]["cluster_id"]) for s in statuses}
        assert len(leaders) == 1 and len(terms) == 1 and len(cluster_ids) == 1
        assert leaders <= ids
        assert leaders == {cluster.member_id(lead)}

        # A write on any member is seen by a linearizable read on every other.
        etcdctl([cluster.members[-1].endpoint], "put", "k", "v")
        for m in cluster.members:
            got = etcdctl([m.endpoint], "get", "k", "--print-value-only").stdout
            assert got.strip() == "v"


def test_peer_port_members_and_version_answer_like_etcd(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        cluster.wait_leader()
        listed = {int(m["ID"]): m for m in cluster.member_list()}
        cluster_id = cluster.status(cluster.members[0]).cluster_id
        for m in cluster.members:
            members, headers = _curl(f"{m.peer_url}/members")
            # etcd names its cluster in a header on /members (joining members check it).
            assert int(headers["x-etcd-cluster-id"], 16) == cluster_id
            assert isinstance(members, list)
            assert len(members) == 3
            for entry in members:
                # etcd's peer handler: id as a JSON number, name, peerURLs, clientURLs.
                assert set(entry) == {"id", "name", "peerURLs", "clientURLs"}
                assert isinstance(entry["id"], int)
                want = listed[entry["id"]]
                assert entry["name"] == want["name"]
                assert entry["peerURLs"] == want["peerURLs"]
                assert entry["clientURLs"] == want["clientURLs"]
            version, _ = _curl(f"{m.peer_url}/version")
            assert isinstance(version, dict)
            assert set(version) == {"etcdserver", "etcdcluster"}
            assert version["etcdcluster"].count(".") == 2

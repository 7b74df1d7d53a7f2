"""Restarting a member on its data dir: same member, same data, same revision, same leases.

The restart expectations run against real etcd as well as etcdpy, so they state etcd's
behaviour, not ours. One deliberate difference: etcd 3.5 starts on another member's data dir
under a new `--name` (and renames that member); etcdpy refuses, naming the owner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Member, etcdctl, free_port, single_member

pytestmark = pytest.mark.e2e


def _state(m: Member) -> dict[str, Any]:
    ep = [m.endpoint]
    members = json.loads(etcdctl(ep, "member", "list", "-w", "json").stdout)
    kvs = json.loads(etcdctl(ep, "get", "", "--from-key", "-w", "json").stdout)
    return {
        "cluster_id": members["header"]["cluster_id"],
        "member_id": members["header"]["member_id"],
        "members": [(x["ID"], x["name"], x["peerURLs"]) for x in members["members"]],
        "revision": kvs["header"]["revision"],
        "kvs": kvs["kvs"],
    }


def _write_some(m: Member) -> str:
    ep = [m.endpoint]
    for i in range(5):
        etcdctl(ep, "put", f"key{i}", f"value{i}")
    etcdctl(ep, "put", "key1", "again")
    etcdctl(ep, "del", "key3")
    lease = etcdctl(ep, "lease", "grant", "600").stdout.split()[1]
    etcdctl(ep, "put", "leased", "v", "--lease", lease)
    etcdctl(ep, "compaction", "3")
    return lease


@pytest.mark.parametrize("kind", ["etcd", "etcdpy"])
def test_restart_resumes_member_data_revision_and_leases(tmp_path: Path, kind: str) -> None:
    m = single_member(kind, tmp_path)
    m.start()
    try:
        m.wait_serving()
        lease = _write_some(m)
        before = _state(m)
        code = m.stop()
        assert code in (0, -15)  # etcd dies by its SIGTERM, etcdpy exits 0
        if kind == "etcdpy":
            assert code == 0
        # Other --initial-* flags are ignored once the data dir holds a member.
        m.extra_args = ["--initial-cluster-token", "another-token"]
        m.start(initial_cluster=f"{m.name}={m.peer_url},ghost=http://127.0.0.1:{free_port()}",
                cluster_state="existing")
        m.wait_serving()
        assert _state(m) == before
        ep = [m.endpoint]
        ttl = etcdctl(ep, "lease", "timetolive", "--keys", lease, "-w", "json").stdout
        ttl_resp = json.loads(ttl)
        # A new leader extends every lease by an election timeout (1 s), as etcd does.
        assert ttl_resp["granted-ttl"] == 600 and 0 < ttl_resp["ttl"] <= 601
        assert ttl_resp["keys"] == ["bGVhc2Vk"]  # "leased"
        old = etcdctl(ep, "get", "key1", "--rev", "2", check=False)
        assert "required revision has been compacted" in old.stderr
        put = json.loads(etcdctl(ep, "put", "after", "restart", "-w", "json").stdout)
        assert put["header"]["revision"] == before["revision"] + 1
    finally:
        m.stop()


@pytest.mark.parametrize("kind", ["etcd", "etcdpy"])
def test_restart_with_new_client_url_publishes_it(tmp_path: Path, kind: str) -> None:
    """The peer URLs come from the data dir; the advertised client URLs from the flags."""
    m = single_member(kind, tmp_path)
    m.start()
    try:
        m.wait_serving()
        first = json.loads(etcdctl([m.endpoint], "member", "list", "-w", "json").stdout)
        m.stop()
        m.client_port = free_port()
        m.start()
        m.wait_serving()
        again = json.loads(etcdctl([m.endpoint], "member", "list", "-w", "json").stdout)
        (before,), (after,) = first["members"], again["members"]
        assert after["ID"] == before["ID"] and after["peerURLs"] == before["peerURLs"]
        assert after["clientURLs"] == [m.client_url]
    finally:
        m.stop()


def test_data_dir_of_another_member_is_refused(tmp_path: Path) -> None:
    m = single_member("etcdpy", tmp_path)
    m.start()
    try:
        m.wait_serving()
        etcdctl([m.endpoint], "put", "k", "v")
        member_id = json.loads(etcdctl([m.endpoint], "member", "list", "-w", "json").stdout)[
            "header"]["member_id"]
    finally:
        m.stop()
    intruder = Member("etcdpy", "other", m.data_dir, free_port(), free_port())
    intruder.start()
    try:
        assert intruder.proc is not None
        code = intruder.proc.wait(timeout=30)
        log = intruder.log_tail()
    finally:
        intruder.stop()
    assert code != 0
    assert "data dir belongs to member 'm1'" in log
    assert format(member_id, "x") in log and "--name m1" in log
    # The refusal changed nothing: the owner starts and serves its data.
    m.start()
    try:
        m.wait_serving()
        assert etcdctl([m.endpoint], "get", "k", "--print-value-only").stdout == "v\n"
    finally:
        m.stop()


def _raft_index(m: Member) -> int:
    status = json.loads(etcdctl([m.endpoint], "endpoint", "status", "-w", "json").stdout)
    return int(status[0]["Status"]["raftIndex"])


@pytest.mark.parametrize("kind", ["etcd", "etcdpy"])
def test_a_restarted_member_publishes_itself_through_raft_before_serving(
    tmp_path: Path, kind: str
) -> None:
    """etcd proposes the member's attributes on every start and serves clients only once that
    proposal is applied: the first answer after a restart already counts the new term's empty
    entry and the publish. (Serving earlier let a lone member answer a linearizable read before
    re-committing an acknowledged write whose commit index had not reached the disk: found by
    the fault soak, seed 1047.)"""
    m = single_member(kind, tmp_path)
    m.start()
    try:
        m.wait_serving()
        etcdctl([m.endpoint], "put", "k", "v")
        before = _raft_index(m)
        m.stop()
        m.start()
        m.wait_serving()
        assert _raft_index(m) == before + 2  # the new leader's empty entry, then the publish
    finally:
        m.stop()

"""etcd 3.6's v3 discovery against a real etcd 3.5.1 registry on loopback: its failures leave no
data dir, and `--discovery-user/-password` authenticate to a registry with auth on."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.discovery.test_v2_discovery_errors import REPO, _run, _warned
from tests.e2e.cluster import wait_for
from tests.e2e.harness import Member, etcdctl, free_port, single_member

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
assert REPO.exists()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Member]:
    member = single_member("etcd", tmp_path / "reg", name="registry")
    (tmp_path / "reg").mkdir()
    member.start()
    try:
        member.wait_serving()
        yield member
    finally:
        member.stop()


def _flags(registry: Member, token: str) -> list[str]:
    return ["--discovery-token", token, "--discovery-endpoints", registry.client_url]


def test_missing_and_bad_size(registry: Member, tmp_path: Path) -> None:
    code, lines, data = _run("etcdpy", tmp_path, "m1", _flags(registry, "none"))
    assert code == 1 and not data.exists()
    assert ("failed to start etcd",
            "failed to join discovery cluster (discovery: size key not found)") in _warned(lines)
    etcdctl([registry.endpoint], "put", "/_etcd/registry/bad/_config/size", "0")
    code, lines, data = _run("etcdpy", tmp_path, "m2", _flags(registry, "bad"))
    assert code == 1 and not data.exists()
    assert ("failed to start etcd",
            "failed to join discovery cluster (discovery: size key is bad)") in _warned(lines)


def test_unreachable_endpoints_give_up_after_the_retry_timeout(tmp_path: Path) -> None:
    flags = ["--discovery-token", "t", "--discovery-endpoints",
             f"http://127.0.0.1:{free_port()},http://127.0.0.1:{free_port()}",
             "--discovery-dial-timeout", "200ms"]
    code, lines, data = _run("etcdpy", tmp_path, "m1", flags)
    assert code == 1 and not data.exists()
    assert any(x["msg"] == "retry connecting to discovery service" for x in lines)
    assert ("failed to start etcd",
            "failed to join discovery cluster (discovery: too many retries)") in _warned(lines)


def test_user_and_password_reach_a_registry_with_auth(registry: Member, tmp_path: Path) -> None:
    ep = [registry.endpoint]
    etcdctl(ep, "user", "add", "root:rootpw")
    etcdctl(ep, "user", "add", "disc:discpw")
    etcdctl(ep, "role", "add", "disc")
    etcdctl(ep, "role", "grant-permission", "disc", "--prefix=true", "readwrite",
            "/_etcd/registry/")
    etcdctl(ep, "user", "grant-role", "disc", "disc")
    etcdctl(ep, "auth", "enable")
    token = secrets.token_hex(8)
    etcdctl(ep, "--user", "root:rootpw", "put", f"/_etcd/registry/{token}/_config/size", "1")

    # Without credentials the registry refuses: no cluster, no data dir.
    code, lines, data = _run("etcdpy", tmp_path, "anon", _flags(registry, token))
    assert code == 1 and not data.exists()
    refused = [x for x in lines if x["msg"] == "failed to get cluster size from discovery service"]
    assert refused and "user name is empty" in refused[0]["error"]

    client, peer = free_port(), free_port()
    member = Member("etcdpy", "m1", tmp_path / "m1.data", client, peer,
                    [*_flags(registry, token), "--discovery-user", "disc",
                     "--discovery-password", "discpw"])
    member.env["PYTHONPATH"] = str(REPO)
    # Member.command adds --initial-cluster; v3 discovery must replace it, so start by hand.
    argv = [a for a in member.command("x") if a not in ("--initial-cluster", "x")]
    log = open(tmp_path / "m1.log", "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    log.close()
    try:
        def serving() -> bool:
            assert proc.poll() is None, (tmp_path / "m1.log").read_text()
            return etcdctl([member.endpoint], "put", "k", "v", check=False).returncode == 0
        wait_for("member bootstrapped through an authenticated registry", serving)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    keys = etcdctl(ep, "--user", "root:rootpw", "get", "--prefix", "--keys-only",
                   f"/_etcd/registry/{token}/members/").stdout.split()
    assert len(keys) == 1

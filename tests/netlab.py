"""Test hosts of their own: Linux network namespaces on a private bridge.

A `NetLab` gives each host a namespace with one interface on a bridge that has no address in
the root namespace, so a lab is an isolated segment: nothing in it can reach the machine's
own network, and two labs (two test runs at once) never see each other even when they use the
same subnet. Each host also gets `/etc/netns/<ns>/resolv.conf` and `hosts`, which `ip netns
exec` bind-mounts over `/etc`, so a program in the namespace resolves names exactly as it would
on a real host with that configuration.

Names carry the creating process's pid (in base 36, so that every name fits Linux's 15-byte
limit for interface names), so a lab left behind by a killed run is recognised and removed by
the next one (`remove_stale_labs`).

Needs root and iproute2; `unavailable_reason()` says why a lab cannot be built here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

NAME_PREFIX = "eplab"  # every namespace, veth and bridge this module creates starts with it
NETNS_ETC = Path("/etc/netns")
COMMAND_TIMEOUT_S = 20.0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=check
    )


def unavailable_reason() -> str | None:
    """None when network namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is not installed"
    probe = f"{NAME_PREFIX}probe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_labs() -> None:
    """Delete namespaces and bridges left by lab owners that no longer run."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ")[0]
        owner = _owner_pid(name)
        if owner is not None and not _pid_alive(owner):
            _ip("netns", "del", name, check=False)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
    links = _ip("-o", "link", "show", "type", "bridge", check=False).stdout.split("\n")
    for line in links:
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        owner = _owner_pid(name)
        if owner is not None and not _pid_alive(owner):
            _ip("link", "del", name, check=False)


def _pid_code(pid: int) -> str:
    """The pid in base 36: at most 5 characters for any Linux pid (< 2**22)."""
    assert 0 < pid < 36**5
    code = ""
    while pid:
        pid, digit = divmod(pid, 36)
        code = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + code
    return code


def _owner_pid(name: str) -> int | None:
    # Names look like eplab<pid in base 36>_<tag>...; anything else is not ours.
    if not name.startswith(NAME_PREFIX) or "_" not in name:
        return None
    code = name[len(NAME_PREFIX) :].split("_", 1)[0]
    try:
        return int(code, 36)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Host:
    """One test host: a namespace, its interface and address on the lab's segment."""

    name: str  # the host's name in DNS and /etc/hosts, e.g. "m1"
    netns: str
    veth: str  # the root-namespace end of the host's link, on the bridge
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host (`ip netns exec` execs it directly: same pid)."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass(slots=True)
class NetLab:
    """Hosts on one isolated segment. Use as a context manager; `close` undoes everything."""

    hosts: list[Host]
    bridge: str
    network: ipaddress.IPv4Network
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="netlab-")))

    @classmethod
    def create(
        cls, host_names: Sequence[str], *, tag: str = "a", subnet: str = "10.213.0.0/24"
    ) -> NetLab:
        """Make one namespace per name, all on a new bridge, addresses .1, .2, ... in order."""
        assert host_names and len(set(host_names)) == len(host_names), "host names must be unique"
        assert len(host_names) <= 9, "one digit of host index in interface names"
        assert tag.isalnum() and len(tag) <= 2, "tag keeps interface names within 15 bytes"
        network = ipaddress.IPv4Network(subnet)
        assert len(host_names) < network.num_addresses - 2
        remove_stale_labs()
        base = f"{NAME_PREFIX}{_pid_code(os.getpid())}_{tag}"
        # Interface names are limited to 15 bytes: 5 + 5 + 1 + 2 + "v" + host index.
        bridge = f"{base}b"
        assert len(bridge) <= 15, bridge
        lab = cls(hosts=[], bridge=bridge, network=network)
        try:
            _ip("link", "add", bridge, "type", "bridge")
            _ip("link", "set", bridge, "up")
            for index, name in enumerate(host_names, start=1):
                lab.hosts.append(lab._add_host(base, index, name))
            lab.write_hosts_file()
        except BaseException:
            lab.close()
            raise
        return lab

    def _add_host(self, base: str, index: int, name: str) -> Host:
        netns = f"{base}{index}"
        veth = f"{base}v{index}"
        assert len(veth) <= 15, veth
        address = str(self.network.network_address + index)
        # A lab of this process with the same tag may have just closed: the kernel dismantles
        # a deleted namespace's links asynchronously, so its veth can still be there.
        _ip("link", "del", veth, check=False)
        _ip("netns", "add", netns)
        (NETNS_ETC / netns).mkdir(parents=True, exist_ok=True)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        prefix = self.network.prefixlen
        _ip("-n", netns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        return Host(name=name, netns=netns, veth=veth, address=address)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    # --- name resolution -------------------------------------------------------------------

    def write_hosts_file(self, domain: str | None = None) -> None:
        """Give every host an /etc/hosts naming all hosts (also as `name.domain` if given)."""
        lines = ["127.0.0.1 localhost"]
        for h in self.hosts:
            names = [h.name] + ([f"{h.name}.{domain}"] if domain else [])
            lines.append(f"{h.address} {' '.join(names)}")
        text = "\n".join(lines) + "\n"
        for h in self.hosts:
            (NETNS_ETC / h.netns / "hosts").write_text(text)

    def use_nameserver(self, address: str, search: str | None = None) -> None:
        """Point every host's resolv.conf at `address` (a host of this lab running dnsmasq)."""
        text = f"nameserver {address}\n" + (f"search {search}\n" if search else "")
        text += "options timeout:1 attempts:2\n"
        for h in self.hosts:
            (NETNS_ETC / h.netns / "resolv.conf").write_text(text)

    def start_dnsmasq(self, on: Host, config_lines: Sequence[str]) -> subprocess.Popen[bytes]:
        """Serve DNS from `on` with the given dnsmasq config lines (address=, srv-host=, ...).

        Only the lab's zone: no upstream servers, no /etc/hosts, no DHCP.
        """
        binary = shutil.which("dnsmasq")
        assert binary is not None, "dnsmasq (Debian dnsmasq-base) is not installed"
        conf = self.scratch / f"dnsmasq-{on.name}.conf"
        base_lines = [
            "no-resolv",
            "no-hosts",
            "no-poll",
            f"listen-address={on.address}",
            "bind-interfaces",
            "log-facility=-",
        ]
        conf.write_text("\n".join([*base_lines, *config_lines]) + "\n")
        argv = on.command([binary, "--keep-in-foreground", f"--conf-file={conf}", "--user=root"])
        proc = self.popen(argv, stderr=subprocess.DEVNULL)
        return proc

    # --- processes and links ---------------------------------------------------------------

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a process that `close` will stop (its own process group)."""
        proc = subprocess.Popen(list(argv), start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc

    def run(self, on: Host, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            on.command(argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def set_link(self, host: Host, up: bool) -> None:
        """Cut or restore a host's only link (its address is kept)."""
        _ip("link", "set", host.veth, "up" if up else "down")

    def close(self) -> None:
        for proc in reversed(self.processes):
            _stop(proc)
        self.processes.clear()
        for h in self.hosts:
            # Delete the link first: deleting the namespace alone frees it only eventually.
            _ip("link", "del", h.veth, check=False)
            _ip("netns", "del", h.netns, check=False)
            shutil.rmtree(NETNS_ETC / h.netns, ignore_errors=True)
        _ip("link", "del", self.bridge, check=False)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def netlab(host_names: Sequence[str], **kwargs: str) -> Iterator[NetLab]:
    lab = NetLab.create(host_names, **kwargs)
    try:
        yield lab
    finally:
        lab.close()

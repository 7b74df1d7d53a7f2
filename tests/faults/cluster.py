"""An etcdpy cluster for fault runs: each member a real process on an address of its own.

Builds on `tests.e2e.cluster.Cluster` (bootstrap, etcdctl-driven membership, HashKV): a
`FaultMember` is a `tests.e2e.harness.Member` that lives at a `Place` — a network namespace of
a `tests.netlab.NetLab` (address 10.x.y.n, commands wrapped in `ip netns exec`) or, where
namespaces cannot be made, a distinct 127.a.b.n loopback address. Every member's advertised
peer URL is a `tests.faults.proxy` in the same place, which forwards to the port the member
really listens on, so peer-link delay/loss/pauses can be switched on per member.

The member processes, the proxies and every firewall rule belong to the `FaultCluster`;
`close()` stops/undoes all of them whatever state a fault left them in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.cluster import FAST_TIMING, Cluster, wait_for, wait_serving
from tests.e2e.harness import Member, etcdctl

REPO = Path(__file__).resolve().parents[2]
CLIENT_PORT = 2379
PEER_PORT = 2380  # the proxy: what other members dial
LISTEN_PEER_PORT = 2381  # the member itself, reached only through its proxy
RPC_TIMEOUT_S = 1.0
# Progress notifications every 500 ms (etcd's robustness tests use 100 ms) so that watchers
# asking for them get bookmarks the watch checker can hold to.
MEMBER_ARGS = [*FAST_TIMING, "--experimental-watch-progress-notify-interval", "500ms"]


@dataclass(frozen=True, slots=True)
class Place:
    """Where a member runs: its address and how to run a command there."""

    name: str
    address: str
    netns: str = ""  # "" on the loopback fallback

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)


@dataclass
class FaultMember(Member):
    place: Place = field(default_factory=lambda: Place("", "127.0.0.1"))
    spec: str = ""  # the --initial-cluster it was (re)started with
    state: str = "new"
    proxy: subprocess.Popen[str] | None = None
    paused: bool = False
    disk: Any = None  # a tests.faults.lazyfs.LazyFS under data_dir, when power loss is on

    @property
    def client_url(self) -> str:
        return f"http://{self.place.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.place.address}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"{self.place.address}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, initial_cluster: str, cluster_state: str = "new") -> list[str]:
        argv = super().command(initial_cluster, cluster_state)
        at = argv.index("--listen-peer-urls")
        argv[at + 1] = f"http://{self.place.address}:{LISTEN_PEER_PORT}"
        return self.place.command(argv)

    def start(self, initial_cluster: str | None = None, cluster_state: str = "new") -> None:
        self.spec = initial_cluster or self.spec
        self.state = cluster_state
        self.paused = False
        self.env.setdefault("PYTHONPATH", str(REPO))
        super().start(self.spec, cluster_state)

    def restart(self) -> None:
        """Start again from the same data dir (the --initial-cluster is then ignored)."""
        self.start(self.spec, self.state)

    def pause(self) -> None:
        if self.running and not self.paused:
            self.signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.running and self.paused:
            self.signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        self.resume()  # a stopped process still dies on SIGKILL, but keep the flag honest
        super().kill()

    # --- the peer proxy in front of this member ----------------------------------------------
    def start_proxy(self) -> None:
        assert self.proxy is None
        listen = f"{self.place.address}:{self.peer_port}"
        target = f"{self.place.address}:{LISTEN_PEER_PORT}"
        argv = self.place.command([sys.executable, "-m", "tests.faults.proxy", listen, target])
        self.proxy = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
        )
        assert self.proxy.stdout is not None
        line = self.proxy.stdout.readline().strip()
        assert line == "ready", f"proxy for {self.name} did not start: {line!r}"

    def proxy_command(self, line: str) -> None:
        assert self.proxy is not None and self.proxy.stdin and self.proxy.stdout
        self.proxy.stdin.write(line + "\n")
        self.proxy.stdin.flush()
        answer = self.proxy.stdout.readline().strip()
        assert answer == "ok", f"proxy {self.name}: {line!r} -> {answer!r}"

    def stop_proxy(self) -> None:
        if self.proxy is None:
            return
        with contextlib.suppress(OSError):
            assert self.proxy.stdin is not None
            self.proxy.stdin.close()
        try:
            self.proxy.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proxy.kill()
            self.proxy.wait(timeout=5)
        self.proxy = None


def loopback_places(size: int, slot: int = 0) -> list[Place]:
    """Distinct loopback addresses, different for each process and slot (parallel runs)."""
    second = 20 + os.getpid() % 200
    return [Place(f"m{i}", f"127.{second}.{slot % 250}.{i}") for i in range(1, size + 1)]


@dataclass
class FaultCluster(Cluster):
    """A `Cluster` whose members are `FaultMember`s at the given places."""

    places: list[Place] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    rules: set[str] = field(default_factory=set)  # netns names that have firewall rules
    lazy: bool = False  # data dirs on LazyFS mounts, so that power loss can be simulated

    def new_member(self, extra_args: Sequence[str] = ()) -> Member:
        place = self.places[self._next - 1]
        self._next += 1
        data = self.base_dir / f"{place.name}.data"
        member = FaultMember(
            "etcdpy", place.name, data, CLIENT_PORT, PEER_PORT,
            [*MEMBER_ARGS, *self.extra_args, *extra_args], env=dict(self.env), place=place,
        )
        # The proxy first: a process started in a namespace with `ip netns exec` gets its own
        # copy of the mounts, and a copy of a LazyFS mount would keep its daemon alive.
        member.start_proxy()
        if self.lazy:
            # The data dir is the mount point itself, so the member's log (next to it) is not
            # on the lazy layer.
            from tests.faults.lazyfs import LazyFS

            member.disk = LazyFS(self.base_dir / f"{place.name}.backing", data)
            member.disk.start()
        return member

    def power_loss(self, member: FaultMember) -> str:
        """After a kill: forget every write `member` did not fsync, as a power cut does."""
        assert self.lazy and member.disk is not None and not member.running
        dropped = member.disk.drop_unsynced()
        return f"{dropped.files} files, {dropped.bytes} bytes unsynced dropped"

    @property
    def fmembers(self) -> list[FaultMember]:
        return [m for m in self.members if isinstance(m, FaultMember)]

    def start(self) -> None:
        self.bootstrap(len(self.places))

    def close(self) -> None:
        self.heal_firewall()
        for m in [*self.members, *self.retired]:
            assert isinstance(m, FaultMember)
            m.resume()
            m.stop(timeout_s=5)
            m.stop_proxy()
            if m.disk is not None:
                m.disk.stop(flush=False)

    # --- asking, with short deadlines (a fault may leave members unresponsive) --------------
    def grpc_status(self, member: Member,
                    timeout_s: float = RPC_TIMEOUT_S) -> rpc_pb2.StatusResponse:
        with grpc.insecure_channel(member.endpoint) as channel:
            stub = rpc_pb2_grpc.MaintenanceStub(channel)
            return stub.Status(rpc_pb2.StatusRequest(), timeout=timeout_s)

    def leader(self) -> FaultMember | None:
        """The member that a running member names as leader in the highest term seen."""
        best: tuple[int, int] | None = None
        for m in self.fmembers:
            if not m.running or m.paused:
                continue
            try:
                st = self.grpc_status(m)
            except grpc.RpcError:
                continue
            if st.leader and (best is None or st.raftTerm > best[0]):
                best = (st.raftTerm, st.leader)
        if best is None:
            return None
        for m in self.fmembers:
            if m.running and not m.paused:
                with contextlib.suppress(grpc.RpcError):
                    if self.grpc_status(m).header.member_id == best[1]:
                        return m
        return None

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Every member up and answering linearizable reads."""
        for m in self.fmembers:
            wait_serving(m, timeout_s)

    def hash_at(self, revision: int, timeout_s: float = 60.0) -> dict[str, int]:
        """Maintenance.HashKV at `revision` on every member, once each has applied it."""
        hashes: dict[str, int] = {}
        for m in self.fmembers:
            def probe(m: FaultMember = m) -> int | None:
                with grpc.insecure_channel(m.endpoint) as channel:
                    kv = rpc_pb2_grpc.KVStub(channel)
                    head = kv.Range(rpc_pb2.RangeRequest(key=b"\0", serializable=True, limit=1),
                                    timeout=RPC_TIMEOUT_S).header.revision
                    if head < revision:
                        return None
                    mt = rpc_pb2_grpc.MaintenanceStub(channel)
                    return int(mt.HashKV(rpc_pb2.HashKVRequest(revision=revision),
                                         timeout=5 * RPC_TIMEOUT_S).hash)
            hashes[m.name] = wait_for(f"{m.name} applied revision {revision}", probe, timeout_s)
        return hashes

    # --- firewall (namespaces only) -----------------------------------------------------------
    def drop_from(self, at: FaultMember, sources: Sequence[FaultMember]) -> None:
        """`at` silently drops every packet from `sources` (one direction of a partition)."""
        assert at.place.netns, "iptables partitions need network namespaces"
        for src in sources:
            _run(at.place.command(["iptables", "-w", "-A", "INPUT", "-s", src.place.address,
                                   "-j", "DROP"]))
        self.rules.add(at.place.netns)

    def heal_firewall(self) -> None:
        for netns in sorted(self.rules):
            _run(["ip", "netns", "exec", netns, "iptables", "-w", "-F", "INPUT"], check=False)
        self.rules.clear()

    # --- membership -------------------------------------------------------------------------
    def replace(self, victim: FaultMember, start: bool = True) -> None:
        """Remove `victim`, wipe its data dir, add it back (new ID) and start it as joining
        (or only make it ready to join: `restart()` then joins)."""
        self.remove(victim, via=next(m for m in self.fmembers if m is not victim and m.running))
        victim.kill()
        shutil.rmtree(victim.data_dir, ignore_errors=True)
        via = next(m for m in self.fmembers if m.running)

        def attempt() -> str | None:
            r = etcdctl([via.endpoint], "member", "add", victim.name,
                        f"--peer-urls={victim.peer_url}", check=False)
            if r.returncode == 0:
                return r.stdout
            assert "unhealthy cluster" in r.stderr, r.stderr
            return None

        out = wait_for("member add accepted", attempt, timeout_s=60.0, interval_s=0.5)
        line = next(x for x in out.splitlines() if x.startswith("ETCD_INITIAL_CLUSTER="))
        spec = line.split("=", 1)[1].strip().strip('"')
        self.retired.remove(victim)
        self.members.append(victim)
        victim.spec, victim.state = spec, "existing"
        if start:
            victim.restart()


def _run(argv: Sequence[str], check: bool = True) -> None:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    assert not check or r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"


def settle(cluster: FaultCluster, timeout_s: float = 60.0) -> None:
    """Wait until one leader is agreed and every member serves linearizable reads."""
    cluster.wait_healthy(timeout_s)
    deadline = time.monotonic() + timeout_s
    while cluster.leader() is None and time.monotonic() < deadline:
        time.sleep(0.1)

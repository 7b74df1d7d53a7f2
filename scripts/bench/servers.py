"""The servers under test: real etcd 3.5.1 and etcdpy clusters (1 or 3 members) and the bare
grpc.aio server, started on loopback with fresh data dirs, plus what is measured about them
from outside (readiness, CPU time, resident memory, data-dir size) via /proc.

Members are `tests.e2e.harness.Member`s, so etcd and etcdpy get exactly the command lines the
end-to-end tests give them; only readiness is probed here, over gRPC, because restart-to-serving
time is one of the results and an etcdctl process per probe would blur it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from etcdpy import grpc_engine
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.harness import Member, free_port

READY_TIMEOUT_S = 60.0
PROBE_INTERVAL_S = 0.01
# Identical for both servers; etcd's defaults otherwise (fsync on, 100 ms heartbeat).
COMMON_FLAGS = ("--log-level", "error")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """What to start: `kind` is "etcd", "etcdpy" or "bare"; `members` is 1 or 3 (bare: 1);
    `workers` is etcdpy's --etcdpy-read-workers (0: off); `grpc_only` gives each member
    --listen-client-http-urls (HTTP on a port of its own, gRPC alone on the client port, which
    read workers then bind beside the member). Names: etcd-1, etcdpy-3, bare, etcdpy-1w (one
    read worker), etcdpy-1wN (N of them), and a trailing g for grpc_only (etcdpy-1g,
    etcdpy-1w2g; etcdpy only: etcd 3.5.1 has no --listen-client-http-urls).
    """

    kind: str
    members: int
    workers: int = 0
    grpc_only: bool = False

    def __post_init__(self) -> None:
        assert self.workers >= 0 and (self.kind == "etcdpy" or not self.workers)
        assert self.kind == "etcdpy" or not self.grpc_only

    @property
    def name(self) -> str:
        if self.kind == "bare":
            return "bare"
        suffix = "" if not self.workers else "w" if self.workers == 1 else f"w{self.workers}"
        return f"{self.kind}-{self.members}{suffix}{'g' if self.grpc_only else ''}"

    @property
    def reference(self) -> str:
        """The etcd target an etcdpy target is compared with: the same number of members
        (etcd's shared port costs it no relay, so a gRPC-only etcdpy port is compared with it)."""
        return f"etcd-{self.members}"

    @property
    def flags(self) -> tuple[str, ...]:
        """Flags this target adds to COMMON_FLAGS (the HTTP port is added per member)."""
        return ("--etcdpy-read-workers", str(self.workers)) if self.workers else ()

    @staticmethod
    def parse(name: str) -> TargetSpec:
        if name == "bare":
            return TargetSpec("bare", 1)
        m = _TARGET_NAME.match(name)
        assert m is not None, (
            f"unknown target {name!r} (e.g. etcd-1, etcdpy-3, etcdpy-1w, etcdpy-1w2g)")
        kind, n, w, count, g = m.groups()
        assert kind == "etcdpy" or not (w or g), f"unknown target {name!r}: that is etcdpy's"
        return TargetSpec(kind, int(n), (int(count or 1) if w else 0), bool(g))


_TARGET_NAME = re.compile(r"^(etcd|etcdpy)-([13])(w(\d*))?(g)?$")


def probe(endpoint: str, timeout_s: float = 1.0) -> bool:
    """One linearizable Range: True once the member serves reads (it knows a leader)."""
    with grpc.insecure_channel(endpoint) as ch:
        try:
            pb_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"bench-probe"), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return True


def wait_ready(endpoint: str, alive: subprocess.Popen[bytes] | None,
               timeout_s: float = READY_TIMEOUT_S) -> float:
    """Poll until `endpoint` serves; returns the seconds waited. Bounded by `timeout_s`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"server for {endpoint} exited with {alive.returncode}")
        if probe(endpoint):
            return time.monotonic() - t0
        time.sleep(PROBE_INTERVAL_S)
    raise TimeoutError(f"{endpoint} not serving after {timeout_s:.0f}s")


# ---- /proc accounting -------------------------------------------------------------------------

def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (etcdpy may run relay child processes)."""
    out, todo = [], [pid]
    while todo and len(out) < 1000:  # bounded: a server has a handful of processes
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes (all threads)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pids: list[int]) -> dict[int, dict[int, float]]:
    """Per process, the CPU seconds of each of its threads (by thread id; the main thread's id
    is the process's).

    A Python server's main thread runs its event loop; the others are gRPC's pollers and
    etcdpy's writer threads, which share the GIL with it. The two apart show whether the loop
    itself is saturated or waits (see driver.loop_usage)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, dict[int, float]] = {}
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        threads: dict[int, float] = {}
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the thread ended meanwhile
            threads[int(task)] = (int(fields[11]) + int(fields[12])) / tick
        out[p] = threads
    return out


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def disk_bytes(path: Path) -> int:
    """Space the files under `path` occupy on disk (LMDB files are sparse: not st_size)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


# ---- deployments ------------------------------------------------------------------------------

@dataclass
class Deployment:
    """One running target. `stop()` is idempotent and kills whatever is left."""

    spec: TargetSpec
    base_dir: Path
    members: list[Member] = field(default_factory=list)
    bare: subprocess.Popen[bytes] | None = None
    bare_port: int = 0

    @property
    def endpoints(self) -> list[str]:
        if self.spec.kind == "bare":
            return [f"127.0.0.1:{self.bare_port}"]
        return [m.endpoint for m in self.members]

    def pids(self) -> list[int]:
        roots = [m.proc.pid for m in self.members if m.proc and m.proc.poll() is None]
        if self.bare is not None and self.bare.poll() is None:
            roots.append(self.bare.pid)
        return [p for r in roots for p in tree(r)]

    def start(self) -> None:
        if self.spec.kind == "bare":
            self.bare_port = free_port()
            log = open(self.base_dir / "bare.log", "ab")  # noqa: SIM115 - the child owns it
            # The same gRPC engine as the member's, so that the comparison is like for like.
            env = dict(os.environ)
            grpc_engine.choose_poller(env)
            self.bare = subprocess.Popen(
                [sys.executable, "-m", "scripts.bench.bare_server", "--port", str(self.bare_port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
            log.close()
            wait_ready(self.endpoints[0], self.bare)
            return
        self.members = [
            Member(self.spec.kind, f"m{i + 1}", self.base_dir / f"m{i + 1}.data",
                   free_port(), free_port(), [*COMMON_FLAGS, *self.spec.flags, *(
                       ("--listen-client-http-urls", f"http://127.0.0.1:{free_port()}")
                       if self.spec.grpc_only else ())])
            for i in range(self.spec.members)
        ]
        spec = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.start(spec, "new")
        for m in self.members:
            wait_ready(m.endpoint, m.proc)

    def restart_first(self) -> float:
        """Stop member 1 cleanly, start it again; seconds from spawn until it serves."""
        m = self.members[0]
        m.stop()
        spec = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        t0 = time.monotonic()
        m.start(spec, "new")
        wait_ready(m.endpoint, m.proc)
        return time.monotonic() - t0

    def stop(self) -> None:
        for m in self.members:
            m.stop()
        if self.bare is not None and self.bare.poll() is None:
            os.killpg(self.bare.pid, signal.SIGTERM)
            try:
                self.bare.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.bare.pid, signal.SIGKILL)
                self.bare.wait(timeout=10)

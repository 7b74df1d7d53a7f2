"""Which load generator runs the workloads: the Go one (built on first use) or the Python one.

The Go generator (loadgen/main.go, etcd's clientv3) is built in GOPATH mode against Debian's
packages, so nothing is downloaded:

    apt-get install -y golang-go golang-etcd-server-dev

The binary is cached under $XDG_CACHE_HOME/etcdpy-bench (default ~/.cache/etcdpy-bench) with the
source's hash in its name, so editing main.go rebuilds it and nothing else does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "loadgen" / "main.go"
# Debian's golang-etcd-server-dev ships etcd 3.4's tree here (clientv3 at go.etcd.io/etcd/clientv3).
DEBIAN_GOPATH = Path("/usr/share/gocode")
CLIENTV3 = DEBIAN_GOPATH / "src" / "go.etcd.io" / "etcd" / "clientv3"
APT_LINE = "apt-get install -y golang-go golang-etcd-server-dev"
BUILD_TIMEOUT_S = 600.0


class Kind(IntEnum):
    GO = 1
    PY = 2


@dataclass(frozen=True, slots=True)
class Generator:
    """A runnable load generator: `argv` + workload flags is the command line."""

    kind: Kind
    argv: tuple[str, ...]
    why: str  # how it was chosen, for the report

    @property
    def name(self) -> str:
        return "go-clientv3" if self.kind == Kind.GO else "py-grpc-aio"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "etcdpy-bench"


def go_unavailable() -> str | None:
    """Why the Go generator cannot be built here, or None if it can."""
    if shutil.which("go") is None:
        return f"no `go` on PATH ({APT_LINE})"
    if not CLIENTV3.is_dir():
        return f"no etcd client sources at {CLIENTV3} ({APT_LINE})"
    return None


def build_go() -> Path:
    """Build loadgen/main.go (or reuse the cached build of the same source); return the binary."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    out = cache_dir() / f"loadgen-{digest}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="etcdpy-loadgen-") as gopath:
        pkg = Path(gopath) / "src" / "loadgen"
        pkg.mkdir(parents=True)
        shutil.copy(SOURCE, pkg / "main.go")
        env = {**os.environ, "GO111MODULE": "off", "GOFLAGS": "",
               "GOPATH": f"{gopath}:{DEBIAN_GOPATH}",
               "GOCACHE": str(cache_dir() / "gocache")}
        tmp = out.with_suffix(".tmp")
        r = subprocess.run(["go", "build", "-o", str(tmp), "."], cwd=pkg, env=env,
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(f"go build failed:\n{r.stderr[-4000:]}")
        tmp.replace(out)  # atomic: a concurrent run never sees half a binary
    for stale in out.parent.glob("loadgen-*"):  # builds of older sources
        if stale != out:
            stale.unlink(missing_ok=True)
    return out


def choose(preference: str) -> Generator:
    """`preference` is "go", "py" or "auto" (Go if it can be built, else Python)."""
    py = Generator(Kind.PY, (sys.executable, "-m", "scripts.bench.pygen"), "")
    if preference == "py":
        return Generator(py.kind, py.argv, "asked for the Python generator")
    missing = go_unavailable()
    if missing is None:
        try:
            return Generator(Kind.GO, (str(build_go()),), "built from Debian's packages")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            missing = str(exc)
    if preference == "go":
        raise SystemExit(f"the Go generator is not available: {missing}")
    return Generator(py.kind, py.argv, f"fallback: {missing}")

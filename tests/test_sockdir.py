"""Socket directories: a member's own are removed when it stops, a killed member's by the
next member to start, a live member's never."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.sockdir import LOCK, SocketDir, sweep
from tests.e2e.harness import single_member

# A process holding a socket directory until it is killed; prints the path first.
HOLDER = """
import sys, time
from etcdpy.sockdir import SocketDir
held = SocketDir("client", sys.argv[1])
print(held.path, flush=True)
time.sleep(120)
"""


@pytest.fixture
def root() -> Iterator[Path]:
    # Short, so the members' socket paths stay within the 107 bytes a Unix socket path holds.
    with tempfile.TemporaryDirectory(prefix="sd") as path:
        yield Path(path)


def _holder(root: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_held_directory_is_kept_and_a_dead_holders_is_swept(root: Path) -> None:
    proc, held = _holder(root)
    try:
        assert (held / LOCK).exists()
        assert sweep(str(root)) == 0 and held.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert held.exists()  # nobody removed it: the process was killed
    assert sweep(str(root)) == 1 and not held.exists()


def test_close_removes_the_directory_and_others_are_left_alone(root: Path) -> None:
    foreign = root / "etcdpy-client-old"  # no lock file: an older member's, not ours to judge
    foreign.mkdir()
    (root / "etcdpy-notes.txt").write_text("a file, not a directory")
    mine = SocketDir("peer", str(root))
    assert Path(mine.path).name.startswith("etcdpy-peer-")
    assert sweep(str(root)) == 0
    mine.close()
    assert not Path(mine.path).exists()
    assert foreign.exists() and (root / "etcdpy-notes.txt").exists()


@pytest.mark.e2e
def test_a_member_starting_removes_what_a_killed_member_left(root: Path, tmp_path: Path) -> None:
    def socket_dirs() -> set[Path]:
        return {p for p in root.glob("etcdpy-*") if (p / LOCK).exists()}

    killed = single_member("etcdpy", tmp_path, "killed")
    killed.env["TMPDIR"] = str(root)
    killed.start()
    try:
        killed.wait_serving()
        left = socket_dirs()
        assert {p.name.split("-")[1] for p in left} == {"client", "peer"}
    finally:
        killed.kill()
    assert socket_dirs() == left
    starting = single_member("etcdpy", tmp_path, "starting")
    starting.env["TMPDIR"] = str(root)
    starting.start()
    try:
        starting.wait_serving()
        now = socket_dirs()
        assert not now & left and len(now) == 2
    finally:
        assert starting.stop() == 0
    assert socket_dirs() == set()

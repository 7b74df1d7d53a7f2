"""`scripts/faults` stopped by SIGTERM leaves nothing behind: no member, no proxy, no namespace.

A signal's default action ends a process without running its `finally`s; the runner turns
stop signals into an orderly exit (children told first, labs removed after), and this runs the
real command line to check it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import netlab
from tests.faults.cluster import REPO

pytestmark = [pytest.mark.e2e]

MEMBERS_UP_S = 90.0  # namespaces, members, proxies: well past a schedule's start-up here
STOPPED_S = 90.0  # the child's cleanup (traffic, members) and the lab's removal


def _processes_mentioning(text: str) -> dict[int, str]:
    """pid -> command line of the processes whose command line contains `text` (the run's
    output dir); a process that exits while this reads /proc is simply not listed."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found[int(entry.name)] = cmdline
    return found


def _namespaces_of(pid: int) -> list[str]:
    prefix = f"{netlab.NAME_PREFIX}{netlab._pid_code(pid)}_"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=False, timeout=20).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(prefix)]


def _wait_for(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


@pytest.mark.parametrize("where", ["namespaces", "loopback"])
@pytest.mark.timeout(MEMBERS_UP_S + 2 * STOPPED_S + 60)
def test_sigterm_stops_the_runner_and_removes_what_it_started(where: str, tmp_path: Path) -> None:
    if where == "namespaces" and (reason := netlab.unavailable_reason()) is not None:
        pytest.skip(reason)
    out = tmp_path / "runs"
    argv = [sys.executable, "-m", "tests.faults.runner", "--schedules", "1", "--sizes", "3",
            "--duration", "120", "--faults", "kill", "--out", str(out)]
    if where == "loopback":
        argv.append("--loopback")
    runner = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Three members (and, with namespaces, the lab) are up when their data dirs' paths
        # show in three etcdpy command lines.
        def members_up() -> bool:
            return len([cmd for cmd in _processes_mentioning(str(out)).values()
                        if "-m etcdpy" in cmd]) >= 3

        assert _wait_for(members_up, MEMBERS_UP_S), "the schedule's members never started"
        if where == "namespaces":
            assert _namespaces_of(runner.pid), "the lab's namespaces are not there"
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=STOPPED_S)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 128 + signal.SIGTERM, output
    assert "stopping: ending the running schedules" in output
    # Nothing of the run is left: members (and proxies, which die with their members' run)
    # and the namespaces.
    assert _wait_for(lambda: not _processes_mentioning(str(out)), 20), (
        f"left running: {_processes_mentioning(str(out))}\n{output}")
    assert not _namespaces_of(runner.pid)

"""A member runs on uvloop, or on asyncio's loop with ETCDPY_EVENT_LOOP=asyncio, and serves
the same either way (the rest of the suite runs on the default, uvloop)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from tests.e2e.harness import etcdctl, find_binary, single_member


def _uvloop_loaded(pid: int) -> bool:
    return "/uvloop/" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize(("choice", "expect_uvloop"), [(None, True), ("asyncio", False)])
def test_a_member_serves_on_either_loop(tmp_path: Path, choice: str | None,
                                        expect_uvloop: bool) -> None:
    member = single_member("etcdpy", tmp_path)
    if choice is not None:
        member.env["ETCDPY_EVENT_LOOP"] = choice
    member.start()
    try:
        member.wait_serving()
        assert member.proc is not None
        assert _uvloop_loaded(member.proc.pid) is expect_uvloop
        ep = [member.endpoint]
        etcdctl(ep, "put", "k", "v1")
        assert etcdctl(ep, "get", "k", "--print-value-only").stdout.strip() == "v1"
        lease = etcdctl(ep, "lease", "grant", "30").stdout.split()[1]
        etcdctl(ep, "put", "k", "v2", "--lease", lease)
        assert "k" in etcdctl(ep, "lease", "timetolive", lease, "--keys").stdout
        # a watch stream through the shared port's relay, replaying both puts from history
        binary = find_binary("etcdctl")
        assert binary
        watch = subprocess.Popen([binary, "--endpoints", member.endpoint, "watch", "k",
                                  "--rev", "1"], stdout=subprocess.PIPE, text=True)
        deadline = threading.Timer(20, watch.kill)  # bounds the reads below
        deadline.start()
        try:
            assert watch.stdout is not None
            lines = [watch.stdout.readline().strip() for _ in range(6)]
        finally:
            deadline.cancel()
            watch.kill()
            watch.wait(timeout=10)
        assert lines == ["PUT", "k", "v1", "PUT", "k", "v2"]
    finally:
        member.stop()

"""Worker processes come and go with the member: a killed worker is replaced while the member
keeps serving, a killed member takes its workers with it, and HTTP on the shared port works
whichever process accepted the connection."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

from tests.e2e.harness import Member, etcdctl
from tests.workers.conftest import WORKERS
from tests.workers.probe import replaced, survey, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of a dead member is gone for our purposes
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_killed_worker_is_replaced_and_workers_die_with_the_member(with_workers: Member) -> None:
    endpoint = with_workers.endpoint
    first = survey(endpoint, WORKERS)
    victim = min(first.workers)
    os.kill(victim, signal.SIGKILL)
    # the member keeps serving on the port the whole time (new connections each time)
    for i in range(10):
        etcdctl([endpoint], "put", f"k{i}", "v")
        assert etcdctl([endpoint], "get", f"k{i}").stdout == f"k{i}\nv\n"
    wait_until("a new worker", lambda: replaced(endpoint, WORKERS, victim))
    now = survey(endpoint, WORKERS)
    assert len(now.workers) == WORKERS and victim not in now.workers
    assert now.member_pids == first.member_pids

    assert with_workers.proc is not None
    os.kill(with_workers.proc.pid, signal.SIGKILL)  # the member only, not its process group
    with_workers.proc.wait(timeout=10)
    wait_until("workers to exit", lambda: not any(_alive(p) for p in now.workers))


def test_http_on_the_shared_port(with_workers: Member) -> None:
    base = f"http://{with_workers.endpoint}"
    etcdctl([with_workers.endpoint], "put", "h", "hv")
    for _ in range(15):  # each urlopen is a new connection, accepted by any process
        with urllib.request.urlopen(f"{base}/health", timeout=10) as r:
            assert json.loads(r.read())["health"] == "true"
        req = urllib.request.Request(f"{base}/v3/kv/range", data=b'{"key":"aA=="}',
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = json.loads(r.read())
        assert body["kvs"][0]["value"] == "aHY=" and body["count"] == "1"
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            assert b"etcd_server_has_leader 1" in r.read()

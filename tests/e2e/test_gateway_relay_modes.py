"""Every relay mode of the shared client port serves etcdctl (gRPC) and curl (HTTP) alike
(ASYNCIO, the default, is what every other e2e test runs on)."""

from __future__ import annotations

import base64
import contextlib
import os
import time
from pathlib import Path

import pytest

from scripts.bench.servers import tree
from tests.e2e.gateway_client import curl
from tests.e2e.harness import etcdctl, single_member

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("mode", ["SPLICE", "PROCESS"])
def test_relay_mode_serves_grpc_and_http_on_one_port(tmp_path: Path, mode: str) -> None:
    member = single_member("etcdpy", tmp_path)
    member.env["ETCDPY_CLIENT_RELAY"] = mode
    member.start()
    try:
        member.wait_serving()
        etcdctl([member.endpoint], "put", "relay", mode)
        reply = curl(f"{member.client_url}/v3/kv/range",
                     f'{{"key":"{base64.b64encode(b"relay").decode()}"}}')
        assert base64.b64decode(reply.json()["kvs"][0]["value"]).decode() == mode
        curl(f"{member.client_url}/v3/kv/put",
             f'{{"key":"{base64.b64encode(b"back").decode()}","value":"aGk="}}')
        got = etcdctl([member.endpoint], "get", "back", "--print-value-only").stdout
        assert got.strip() == "hi"
    finally:
        code = member.stop()
    assert code == 0, member.log_tail()


def _open_fds(pid: int) -> int:
    """Descriptors held by `pid` and its children (PROCESS mode relays in a child)."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):  # a child that has just exited
            total += len(os.listdir(f"/proc/{p}/fd"))
    return total


@pytest.mark.parametrize("mode", ["ASYNCIO", "SPLICE", "PROCESS"])
def test_relayed_connections_leave_nothing_open_once_clients_hang_up(
        tmp_path: Path, mode: str) -> None:
    """etcdctl ends each connection with a FIN; every relayed socket must be closed after
    (the asyncio relay once kept both half-closed sockets of every such connection)."""
    member = single_member("etcdpy", tmp_path)
    member.env["ETCDPY_CLIENT_RELAY"] = mode
    member.start()
    try:
        member.wait_serving()
        assert member.proc is not None
        etcdctl([member.endpoint], "get", "warm-up")
        before = _open_fds(member.proc.pid)
        for _ in range(30):
            etcdctl([member.endpoint], "get", "x")
        after = _open_fds(member.proc.pid)
        for _ in range(50):  # the last connections may take a moment to be torn down
            if after <= before + 4:
                break
            time.sleep(0.1)
            after = _open_fds(member.proc.pid)
        assert after <= before + 4, f"{before} descriptors before 30 connections, {after} after"
    finally:
        code = member.stop()
    assert code == 0, member.log_tail()

"""With --listen-client-http-urls the client port carries gRPC alone: the member's and every
worker's gRPC server bind it (SO_REUSEPORT), connections reach them with no relay, HTTP has
its own port, and a killed worker's replacement binds the port again."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.harness import Member, etcdctl, free_port, single_member, start_all
from tests.workers.probe import channel_on, replaced, stats, survey, wait_until

WORKERS = 2


@pytest.fixture
def grpc_port_member(tmp_path: Path) -> Iterator[tuple[Member, int]]:
    http_port = free_port()
    member = single_member("etcdpy", tmp_path, "g", (
        "--etcdpy-read-workers", str(WORKERS),
        "--listen-client-http-urls", f"http://127.0.0.1:{http_port}"))
    start_all([member])
    try:
        yield member, http_port
    finally:
        member.stop()


def test_workers_bind_the_grpc_port_beside_the_member(
        grpc_port_member: tuple[Member, int]) -> None:
    member, http_port = grpc_port_member
    endpoint = member.endpoint
    first = survey(endpoint, WORKERS)  # the member and both workers answer on the port
    with channel_on(endpoint, worker=True) as on_worker:
        kv = pb_grpc.KVStub(on_worker)
        before = stats(on_worker)
        put = kv.Put(pb.PutRequest(key=b"k", value=b"v"))
        got = kv.Range(pb.RangeRequest(key=b"k"))
        assert got.kvs[0].value == b"v" and got.header.revision == put.header.revision
        after = stats(on_worker)
        assert after.batched_writes == before.batched_writes + 1
        assert after.local_ranges == before.local_ranges + 1

    # HTTP is on its own port (the member's); the gRPC port speaks gRPC only
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=10) as r:
        assert json.loads(r.read())["health"] == "true"
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v3/kv/range",
                                 data=b'{"key":"aw=="}',
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["kvs"][0]["value"] == "dg=="

    # nothing but an SO_REUSEPORT socket can bind the port meanwhile (no second server)
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", member.client_port))

    victim = min(first.workers)
    os.kill(victim, signal.SIGKILL)
    for i in range(10):  # served throughout, by whoever the kernel picks
        etcdctl([endpoint], "put", f"k{i}", "v")
        assert etcdctl([endpoint], "get", f"k{i}").stdout == f"k{i}\nv\n"
    wait_until("a new worker on the port", lambda: replaced(endpoint, WORKERS, victim))
    now = survey(endpoint, WORKERS)
    assert len(now.workers) == WORKERS and now.member_pids == first.member_pids

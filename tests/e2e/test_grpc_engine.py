"""A member serves gRPC with the polling engine: its calls do not hop through EventEngine threads.

Counted, not timed: the context switches of the threads gRPC names `event_engine` while a
client makes calls. With EventEngine's I/O (gRPC's default since 1.80) each call wakes them
at least once; with the poller they only keep time.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.harness import Member, single_member

CALLS = 400


def _event_engine_switches(pid: int) -> int:
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended meanwhile
            continue
        if re.search(r"^Name:\s+event_engine", text, re.M):
            total += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", text))
    return total


def _switches_during_calls(member: Member) -> int:
    assert member.proc is not None
    with grpc.insecure_channel(member.endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10)
        before = _event_engine_switches(member.proc.pid)
        for _ in range(CALLS):
            assert kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10).kvs[0].value == b"v"
        return _event_engine_switches(member.proc.pid) - before


def _started(tmp_path: Path, env: dict[str, str]) -> Member:
    member = single_member("etcdpy", tmp_path)
    member.env.update(env)
    member.start()
    member.wait_serving()
    return member


def test_a_member_reads_its_sockets_without_event_engine_threads(tmp_path: Path) -> None:
    member = _started(tmp_path, {})
    try:
        switches = _switches_during_calls(member)
        assert switches < CALLS // 4, f"{switches} event_engine switches for {CALLS} calls"
        assert "Unknown experiment" not in member.log_tail(200)
    finally:
        member.stop()


def test_an_operators_grpc_experiments_keep_grpcs_default_engine(tmp_path: Path) -> None:
    # GRPC_EXPERIMENTS set, even empty, is the operator's choice: gRPC's EventEngine I/O
    member = _started(tmp_path, {"GRPC_EXPERIMENTS": ""})
    try:
        switches = _switches_during_calls(member)
        assert switches >= CALLS, f"only {switches} event_engine switches for {CALLS} calls"
    finally:
        member.stop()

"""Which process served a connection: every call here opens a connection of its own and asks
etcdpy.internal.Worker/Stats on it (a worker answers with its own counters, the member with
is_worker false)."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from etcdpy._pb.workerpb import worker_pb2, worker_pb2_grpc

# grpcio shares one connection among channels to the same target unless told otherwise.
FRESH = [("grpc.use_local_subchannel_pool", 1)]


@contextmanager
def fresh_channel(endpoint: str) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(endpoint, options=FRESH)
    try:
        yield channel
    finally:
        channel.close()


def stats(channel: grpc.Channel) -> worker_pb2.StatsResponse:
    return worker_pb2_grpc.WorkerStub(channel).Stats(worker_pb2.StatsRequest(), timeout=5)


@dataclass
class Served:
    """Counters per worker pid, and the pids seen answering for the member."""

    workers: dict[int, worker_pb2.StatsResponse]
    member_pids: set[int]

    @property
    def local_ranges(self) -> int:
        return sum(s.local_ranges for s in self.workers.values())

    @property
    def proxied(self) -> int:
        return sum(s.proxied_calls for s in self.workers.values())


def survey(endpoint: str, workers: int, max_connections: int = 300,
           timeout_s: float = 30.0) -> Served:
    """Open connections until every one of `workers` workers and the member have answered:
    at least `max_connections` (with k+1 processes accepting, 300 connections miss one with
    odds ~1e-25) and, for workers still starting (they start once the member serves, a
    second or more on a busy machine), more until `timeout_s` has passed."""
    served = Served({}, set())
    deadline = time.monotonic() + timeout_s
    attempts = 0
    while attempts < max_connections or time.monotonic() < deadline:
        if attempts >= max_connections:
            time.sleep(0.05)
        attempts += 1
        with fresh_channel(endpoint) as channel:
            s = stats(channel)
        if s.is_worker:
            served.workers[s.pid] = s
        else:
            served.member_pids.add(s.pid)
        if len(served.workers) == workers and served.member_pids:
            return served
    raise AssertionError(f"only {len(served.workers)} of {workers} workers and "
                         f"{len(served.member_pids)} member answered in {attempts}")


def rpc_error(call: object) -> tuple[grpc.StatusCode, str]:
    """The status code and details a call fails with (it must fail)."""
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise AssertionError("the call did not fail")


def replaced(endpoint: str, workers: int, victim: int) -> bool:
    """All `workers` answer again and the killed `victim` is not among them (False while its
    replacement is still starting)."""
    try:
        return victim not in survey(endpoint, workers, max_connections=60,
                                    timeout_s=0).workers
    except AssertionError:
        return False


@contextmanager
def channel_on(endpoint: str, worker: bool, attempts: int = 200) -> Iterator[grpc.Channel]:
    """A connection that landed on a worker (or, with worker=False, on the member)."""
    for _ in range(attempts):
        channel = grpc.insecure_channel(endpoint, options=FRESH)
        if stats(channel).is_worker == worker:
            try:
                yield channel
            finally:
                channel.close()
            return
        channel.close()
    raise AssertionError(f"no connection landed on a {'worker' if worker else 'member'}")


def member_ranges(endpoint: str) -> int:
    """Range RPCs the member itself handled (its /metrics, all codes)."""
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    pattern = re.compile(
        r'^grpc_server_handled_total\{[^}]*grpc_method="Range"[^}]*\} (\d+)', re.M)
    return sum(int(n) for n in pattern.findall(text))


def wait_until(what: str, check: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")

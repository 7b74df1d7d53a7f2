"""What sharing the client port with HTTP/1.1 costs gRPC, on the real server.

Starts single-member etcdpy servers on loopback: one whose client URL is gRPC only (HTTP moved
away with --listen-client-http-urls, so grpcio binds the port itself) and one per relay mode
whose client URL is shared (gRPC relayed to the server's Unix socket). Then, in interleaved
rounds so that machine noise hits every server alike, it drives Put and Range (linearizable)
over grpc.aio with a fixed number of requests in flight and prints requests per second and the
ratio to the gRPC-only port.

    PYTHONPATH=. python scripts/bench_client_port.py [--requests 3000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc

MODES = ("GRPC_ONLY", "ASYNCIO", "SPLICE", "PROCESS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(mode: str, base: str) -> tuple[subprocess.Popen[bytes], str]:
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    args = [sys.executable, "-m", "etcdpy", "--name", "b", "--data-dir", f"{base}/{mode}",
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"b={peer_url}", "--log-level", "error"]
    env = dict(os.environ)
    if mode == "GRPC_ONLY":
        args += ["--listen-client-http-urls", f"http://127.0.0.1:{free_port()}"]
    else:
        env["ETCDPY_CLIENT_RELAY"] = mode
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    return proc, f"127.0.0.1:{client}"


async def wait_ready(target: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(target) as ch:
        kv = pb_grpc.KVStub(ch)
        while True:
            try:
                await kv.Range(pb.RangeRequest(key=b"ready"), timeout=1)
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def drive(target: str, op: str, requests: int, concurrency: int) -> float:
    """Requests per second for `requests` calls, `concurrency` in flight."""
    async with grpc.aio.insecure_channel(target) as ch:
        kv = pb_grpc.KVStub(ch)
        remaining = [requests]

        async def worker(w: int) -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                if op == "put":
                    await kv.Put(pb.PutRequest(key=b"k%d" % (w % 100), value=b"x" * 64))
                else:
                    await kv.Range(pb.RangeRequest(key=b"k%d" % (w % 100)))

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return requests / (time.perf_counter() - started)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    assert 0 < args.rounds <= 20 and 0 < args.requests <= 100_000
    base = tempfile.mkdtemp(prefix="etcdpy-bench-")
    servers = {mode: start(mode, base) for mode in MODES}
    try:
        for _, target in servers.values():
            await wait_ready(target)
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for op in ("put", "range"):
                for mode, (_, target) in servers.items():
                    rate = await drive(target, op, args.requests, args.concurrency)
                    results.setdefault((mode, op), []).append(rate)
        print(f"{'port':<10} {'op':<6} {'req/s (median)':>15} {'vs gRPC-only':>13}")
        for op in ("put", "range"):
            base_rate = statistics.median(results[("GRPC_ONLY", op)])
            for mode in MODES:
                rate = statistics.median(results[(mode, op)])
                print(f"{mode:<10} {op:<6} {rate:>15.0f} {rate / base_rate:>13.2f}")
    finally:
        for proc, _ in servers.values():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

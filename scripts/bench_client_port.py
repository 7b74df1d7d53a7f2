"""What sharing the client port with HTTP/1.1 costs gRPC, on the real server.

Starts single-member etcdpy servers on loopback: one whose client URL is gRPC only (HTTP moved
away with --listen-client-http-urls, so grpcio binds the port itself) and one per relay mode
whose client URL is shared (gRPC relayed to the server's Unix socket). Then, in interleaved
rounds so that machine noise hits every server alike, it drives Put and Range (linearizable)
over grpc.aio with a fixed number of requests in flight and prints requests per second and the
ratio to the gRPC-only port.

    PYTHONPATH=. python scripts/bench_client_port.py [--requests 3000] [--concurrency 32]
        [--rounds 5] [--modes GRPC_ONLY,ASYNCIO] [--baseline-src /path/to/other/checkout]

Besides throughput it reports the server's CPU time per request (user + system, summed over
the server's process group, so a relay child process counts): on a machine shared with other
work, throughput swings with the load, while CPU per request measures what the relay itself
costs.

Each round runs the servers in a rotated order and every ratio is taken within its round
(against the gRPC-only server's rate of that round), so load from other processes that comes
and goes shows up as spread rather than as bias; the median and range of those ratios are
printed. `--baseline-src` adds a shared-port server (mode BASELINE, relay ASYNCIO) run from
another source tree, to compare a relay change with the code before it in the same run.
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

MODES = ("GRPC_ONLY", "ASYNCIO", "SPLICE", "PROCESS", "PROCESS_SPLICE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(mode: str, base: str, baseline_src: str = "") -> tuple[subprocess.Popen[bytes], str]:
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    args = [sys.executable, "-m", "etcdpy", "--name", "b", "--data-dir", f"{base}/{mode}",
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"b={peer_url}", "--log-level", "error"]
    env = dict(os.environ)
    if mode == "GRPC_ONLY":
        args += ["--listen-client-http-urls", f"http://127.0.0.1:{free_port()}"]
    elif mode == "BASELINE":
        env["PYTHONPATH"] = baseline_src
        env["ETCDPY_CLIENT_RELAY"] = "ASYNCIO"
    elif mode == "PROCESS_SPLICE":  # the front child process relays with os.splice
        env["ETCDPY_CLIENT_RELAY"] = "PROCESS"
        env["ETCDPY_PROCESS_RELAY"] = "SPLICE"
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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgid: int) -> tuple[float, float]:
    """User + system CPU seconds of the process `pgid` itself and of its whole process group
    (the server and, in PROCESS mode, its relay child), from Linux's /proc."""
    total = own = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        # after the command: state, ppid, pgrp, ..., utime (12th), stime (13th)
        if int(fields[2]) == pgid:
            ticks = int(fields[11]) + int(fields[12])
            total += ticks
            own += ticks if int(entry) == pgid else 0
    return own / CLOCK_TICKS, total / CLOCK_TICKS


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
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--baseline-src", default="")
    args = ap.parse_args()
    assert 0 < args.rounds <= 20 and 0 < args.requests <= 100_000
    modes = [m for m in args.modes.split(",") if m]
    assert set(modes) <= set(MODES) and "GRPC_ONLY" in modes, modes
    if args.baseline_src:
        modes.append("BASELINE")
    base = tempfile.mkdtemp(prefix="etcdpy-bench-")
    servers = {mode: start(mode, base, args.baseline_src) for mode in modes}
    try:
        for _, target in servers.values():
            await wait_ready(target)
        rates: dict[tuple[str, str], list[float]] = {}
        ratios: dict[tuple[str, str], list[float]] = {}
        cpu_ms: dict[tuple[str, str], list[float]] = {}
        own_ms: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            for op in ("put", "range"):
                this_round = {}
                for mode in order:
                    pgid = servers[mode][0].pid
                    cpu_before = group_cpu_s(pgid)
                    this_round[mode] = await drive(servers[mode][1], op, args.requests,
                                                   args.concurrency)
                    cpu_after = group_cpu_s(pgid)
                    own_ms.setdefault((mode, op), []).append(
                        1000 * (cpu_after[0] - cpu_before[0]) / args.requests)
                    cpu_ms.setdefault((mode, op), []).append(
                        1000 * (cpu_after[1] - cpu_before[1]) / args.requests)
                for mode, rate in this_round.items():
                    rates.setdefault((mode, op), []).append(rate)
                    ratios.setdefault((mode, op), []).append(rate / this_round["GRPC_ONLY"])
        print(f"{'port':<10} {'op':<6} {'req/s (median)':>15} {'vs gRPC-only':>13} "
              f"{'(min-max)':>12} {'CPU ms/req':>11} {'vs gRPC-only':>13} "
              f"{'server proc':>12} {'vs gRPC-only':>13}")
        for op in ("put", "range"):
            base_cpu = statistics.median(cpu_ms[("GRPC_ONLY", op)])
            base_own = statistics.median(own_ms[("GRPC_ONLY", op)])
            for mode in modes:
                rs = ratios[(mode, op)]
                cpu = statistics.median(cpu_ms[(mode, op)])
                own = statistics.median(own_ms[(mode, op)])
                print(f"{mode:<10} {op:<6} {statistics.median(rates[(mode, op)]):>15.0f} "
                      f"{statistics.median(rs):>13.2f} {min(rs):>6.2f}-{max(rs):.2f} "
                      f"{cpu:>11.3f} {cpu / base_cpu:>13.2f} {own:>12.3f} {own / base_own:>13.2f}")
    finally:
        for proc, _ in servers.values():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

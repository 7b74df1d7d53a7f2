#!/usr/bin/env python3
"""What the shared-port front costs gRPC: unary Put-like RPCs, direct vs through the front.

One server process runs the bare grpc.aio KV servicer (scripts/bench/bare_server.py: Put into a
dict, as cheap as a server gets, so the relay's cost is not hidden behind real work) listening
on a TCP port directly and on a Unix socket behind a `SharedPort` per relay mode (asyncio, splice
threads, and a child process relaying with asyncio or splice). Client processes then drive each
target in turn, several rounds interleaved so drift on a shared machine spreads over
all targets, and the script prints throughput and latency per target plus ratios to direct.

    PYTHONPATH=. python scripts/bench_netshare.py [--clients 4] [--concurrency 16] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import tempfile
import time

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.netshare import HttpRequest, HttpResponse, RelayMode, SharedPort, SharedPortOptions
from scripts.bench import bare_server


async def _no_http(req: HttpRequest) -> HttpResponse:
    return HttpResponse.text(404, "404 page not found\n")


def serve(ready: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        tmp = tempfile.mkdtemp(prefix="bench-netshare-")
        sock = os.path.join(tmp, "grpc.sock")
        server = grpc.aio.server()
        bare_server.add_to(server)
        direct = server.add_insecure_port("127.0.0.1:0")
        server.add_insecure_port(f"unix:{sock}")
        await server.start()
        variants = {
            "asyncio": SharedPortOptions(relay=RelayMode.ASYNCIO),
            "splice": SharedPortOptions(relay=RelayMode.SPLICE),
            "proc-asyncio": SharedPortOptions(relay=RelayMode.PROCESS),
            "proc-splice": SharedPortOptions(
                relay=RelayMode.PROCESS, process_relay=RelayMode.SPLICE
            ),
        }
        fronts = {}
        for name, opts in variants.items():
            front = SharedPort("127.0.0.1", 0, sock, _no_http, opts)
            await front.start()
            fronts[name] = front
        ready.put({"direct": direct, **{k: f.port for k, f in fronts.items()}})
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for f in fronts.values():
            await f.stop()
        await server.stop(grace=None)

    asyncio.run(main())


def client(port: int, concurrency: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                    for _ in range(max(1, concurrency // 4))]
        stubs = [rpc_pb2_grpc.KVStub(c) for c in channels]
        for s in stubs:  # connect before the clock starts
            await s.Put(rpc_pb2.PutRequest(key=b"warm", value=b"x"))
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker(i: int) -> None:
            stub = stubs[i % len(stubs)]
            key = f"key-{i}".encode()
            value = b"v" * 128
            while (start := time.perf_counter()) < deadline:
                await stub.Put(rpc_pb2.PutRequest(key=key, value=value))
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        for c in channels:
            await c.close()
        out.put(latencies)

    asyncio.run(main())


def run_target(port: int, clients: int, concurrency: int, seconds: float) -> list[float]:
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=client, args=(port, concurrency, seconds, out))
             for _ in range(clients)]
    for p in procs:
        p.start()
    latencies: list[float] = []
    for _ in procs:
        latencies += out.get(timeout=seconds + 60)
    for p in procs:
        p.join(timeout=30)
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (from /proc; Linux only)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def front_pids(server_pid: int) -> list[int]:
    """The server's child processes (the PROCESS fronts), from /proc."""
    with open(f"/proc/{server_pid}/task/{server_pid}/children") as f:
        return [int(p) for p in f.read().split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4, help="client processes")
    ap.add_argument("--concurrency", type=int, default=16, help="RPCs in flight per process")
    ap.add_argument("--seconds", type=float, default=4.0, help="per target per round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    ready: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    stop = mp.Event()
    server = mp.Process(target=serve, args=(ready, stop))
    server.start()
    try:
        ports = ready.get(timeout=30)
        results: dict[str, list[float]] = {k: [] for k in ports}
        counts: dict[str, int] = {k: 0 for k in ports}
        cpu: dict[str, float] = {k: 0.0 for k in ports}
        front_cpu: dict[str, float] = {k: 0.0 for k in ports}
        assert server.pid is not None
        fronts = front_pids(server.pid)
        for _ in range(args.rounds):
            for name, port in ports.items():
                before = cpu_seconds(server.pid)
                before_fronts = sum(cpu_seconds(pid) for pid in fronts)
                lat = run_target(port, args.clients, args.concurrency, args.seconds)
                cpu[name] += cpu_seconds(server.pid) - before
                front_cpu[name] += sum(cpu_seconds(pid) for pid in fronts) - before_fronts
                results[name] += lat
                counts[name] += len(lat)
        total_s = args.rounds * args.seconds
        print("CPU per request counts all threads of the server process and, separately, of the"
              " front child processes; on a loaded machine it is steadier than req/s")
        print(f"{args.clients} client processes x {args.concurrency} concurrent unary Put, "
              f"{args.rounds} rounds x {args.seconds:g} s per target, cpus={os.cpu_count()}")
        base = counts["direct"] / total_s
        for name in ports:
            lat = sorted(results[name])
            rps = counts[name] / total_s
            p50 = statistics.median(lat) * 1000
            p99 = lat[int(len(lat) * 0.99)] * 1000
            us = cpu[name] / counts[name] * 1e6
            front_us = front_cpu[name] / counts[name] * 1e6
            print(f"{name:12s} {rps:7.0f} req/s ({rps / base:4.2f} x direct)  "
                  f"p50 {p50:5.2f} ms  p99 {p99:6.2f} ms  CPU/req: server {us:4.0f} us"
                  f" + front process {front_us:3.0f} us")
    finally:
        stop.set()
        server.join(timeout=30)


if __name__ == "__main__":
    main()

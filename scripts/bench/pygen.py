"""Fallback load generator in Python: the KV workloads of loadgen/main.go, same flags, same JSON.

Used when Go or Debian's etcd client sources are missing, so the benchmark (and its smoke test)
always runs. grpc.aio in one process tops out near what the bare server can take, so the load is
spread over several processes (`--procs`, default one per core); still, a Python generator is a
likelier bottleneck than the Go one, and its results say `"generator": "py-grpc-aio"`.

    PYTHONPATH=. python -m scripts.bench.pygen --endpoints 127.0.0.1:2379 --workload put
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import multiprocessing as mp
import os
import random
import sys
import time
from dataclasses import dataclass, field

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc

WORKLOADS = ("put", "seqput", "range", "srange", "txnput")
OP_TIMEOUT_S = 30.0

# Log-spaced latency buckets (upper bounds in ns), as in loadgen/main.go: bounded memory.
_BUCKETS: list[float] = [1000.0 * 1.02**i for i in range(1200)]


@dataclass(slots=True)
class Tally:
    """One process's counts; merged by the parent. `hist[i]` counts ops <= _BUCKETS[i] ns."""

    ops: int = 0
    errors: int = 0
    first_error: str = ""
    hist: list[int] = field(default_factory=lambda: [0] * len(_BUCKETS))

    def add(self, ns: float) -> None:
        self.hist[min(bisect.bisect_left(_BUCKETS, ns), len(_BUCKETS) - 1)] += 1
        self.ops += 1

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        self.first_error = self.first_error or repr(exc)

    def merge(self, other: Tally) -> None:
        self.ops += other.ops
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.hist = [a + b for a, b in zip(self.hist, other.hist, strict=True)]

    def quantile_ms(self, q: float) -> float:
        n = sum(self.hist)
        if n == 0:
            return 0.0
        want, seen = int(q * (n - 1)) + 1, 0
        for i, c in enumerate(self.hist):
            seen += c
            if seen >= want:
                return _BUCKETS[i] / 1e6
        return _BUCKETS[-1] / 1e6


def key(size: int, i: int) -> bytes:
    return b"k" + str(i).encode().rjust(max(0, size - 1), b"0")


def parse_duration(text: str) -> float:
    """Go-style "10s" / "500ms" (only the units the driver uses)."""
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    return float(text.rstrip("s"))


async def _run(args: argparse.Namespace, clients: int, conns: int, endpoints: list[str],
               prefill: bool, ready: mp.Barrier) -> tuple[Tally, float]:  # type: ignore[type-arg]
    """Warm up (and prefill), wait for every process at `ready`, then run the timed loop;
    returns the tally and the timed loop's seconds."""
    channels = [grpc.aio.insecure_channel(endpoints[i % len(endpoints)]) for i in range(conns)]
    stubs = [pb_grpc.KVStub(c) for c in channels]
    value = b"v" * args.val_size
    tally = Tally()
    try:
        for s in stubs:  # connect before the clock starts
            await s.Range(pb.RangeRequest(key=b"loadgen-warmup"), timeout=OP_TIMEOUT_S)
        if prefill:  # in Txns of 100 puts, as the Go generator does
            for lo in range(0, args.key_space, 100):
                ops = [pb.RequestOp(request_put=pb.PutRequest(key=key(args.key_size, i),
                                                              value=value))
                       for i in range(lo, min(lo + 100, args.key_space))]
                await stubs[0].Txn(pb.TxnRequest(success=ops), timeout=OP_TIMEOUT_S)
        serializable = args.workload == "srange"
        await asyncio.to_thread(ready.wait, 60)  # the clock starts for all processes at once
        began = time.perf_counter()
        deadline = began + parse_duration(args.duration)
        budget = [args.total // max(1, args.procs) if args.total else -1]

        async def worker(w: int) -> None:
            rng = random.Random(w + 1)
            stub = stubs[w % conns]
            while time.perf_counter() < deadline and budget[0] != 0:
                budget[0] -= 1
                k = key(args.key_size, rng.randrange(args.key_space))
                t0 = time.perf_counter_ns()
                try:
                    if args.workload in ("put", "seqput"):
                        await stub.Put(pb.PutRequest(key=k, value=value), timeout=OP_TIMEOUT_S)
                    elif args.workload == "txnput":
                        op = pb.RequestOp(request_put=pb.PutRequest(key=k, value=value))
                        await stub.Txn(pb.TxnRequest(success=[op]), timeout=OP_TIMEOUT_S)
                    else:
                        resp = await stub.Range(pb.RangeRequest(key=k, serializable=serializable),
                                                timeout=OP_TIMEOUT_S)
                        if len(resp.kvs) != 1:
                            raise LookupError(f"range {k!r} returned {len(resp.kvs)} keys")
                except (grpc.aio.AioRpcError, LookupError) as exc:
                    tally.fail(exc)
                    continue
                tally.add(time.perf_counter_ns() - t0)

        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - began
    finally:
        for c in channels:
            await c.close()
    return tally, elapsed


def _child(args: argparse.Namespace, index: int, ready: mp.Barrier,  # type: ignore[type-arg]
           out: mp.Queue) -> None:  # type: ignore[type-arg]
    share = lambda n: max(1, n // args.procs + (1 if index < n % args.procs else 0))  # noqa: E731
    endpoints = args.endpoints.split(",")
    # Rotate endpoints so processes spread over the members, as the Go client does.
    endpoints = endpoints[index % len(endpoints):] + endpoints[:index % len(endpoints)]
    prefill = index == 0 and args.workload in ("range", "srange")
    tally, elapsed = asyncio.run(
        _run(args, share(args.clients), share(args.conns), endpoints, prefill, ready))
    out.put((tally.ops, tally.errors, tally.first_error, tally.hist, elapsed))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", default="127.0.0.1:2379")
    ap.add_argument("--workload", default="put")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--total", type=int, default=0)
    ap.add_argument("--key-size", type=int, default=8)
    ap.add_argument("--key-space", type=int, default=1000)
    ap.add_argument("--val-size", type=int, default=256)
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    args, unknown = ap.parse_known_args(argv)  # the Go generator's extra flags are ignored
    if args.workload not in WORKLOADS:
        print(f"pygen: workload {args.workload!r} needs the Go generator "
              f"(pygen does {', '.join(WORKLOADS)})", file=sys.stderr)
        sys.exit(3)
    # A closed loop with one client cannot use more than one process.
    args.procs = max(1, min(args.procs, args.clients, args.conns))
    ready = mp.Barrier(args.procs)
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_child, args=(args, i, ready, out)) for i in range(args.procs)]
    for p in procs:
        p.start()
    total = Tally()
    secs = 0.0
    try:
        for _ in procs:
            ops, errors, first, hist, elapsed = out.get(
                timeout=parse_duration(args.duration) + 180)
            total.merge(Tally(ops, errors, first, hist))
            secs = max(secs, elapsed)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    print(json.dumps({
        "workload": args.workload, "generator": "py-grpc-aio", "ops": total.ops,
        "seconds": secs, "ops_per_s": total.ops / secs if secs > 0 else 0.0,
        "p50_ms": total.quantile_ms(0.5), "p99_ms": total.quantile_ms(0.99),
        "p999_ms": total.quantile_ms(0.999), "errors": total.errors,
        "first_error": total.first_error,
    }), flush=True)


if __name__ == "__main__":
    main()

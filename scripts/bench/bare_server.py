"""The bare grpc.aio KV server: the most a single Python process can serve, as a yardstick.

Put, Range and put-only Txn against a dict, lease grants and keep-alives against a counter, and
watches that get every put they match as it happens, with no Raft, no disk, no MVCC, no expiry
and no history: what is left is grpcio's and protobuf's own cost per request (per message on a
keep-alive or watch stream). Several grpc.aio servers share the port (SO_REUSEPORT) on one
event loop, as etcdpy's member runs several behind its client port: one grpc.aio server takes
in one new call per loop turn, and four do 1.5x the calls of one on 2 cores, eight another
10-15% (etcdpy.server.api.grpc_server.ClientServers; the default count is the member's). The side-by-side benchmark (scripts/bench/driver.py) and the
shared-port benchmark (scripts/bench_netshare.py) both measure against it.

    PYTHONPATH=. python -m scripts.bench.bare_server --port 23790
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

from etcdpy import allocator, eventloop, gctuning
from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.server.api.grpc_server import RELAYED_SERVERS

# Any fixed ids will do: clients only echo them; they make the header as big as etcd's.
CLUSTER_ID = 0x1C0FFEE
MEMBER_ID = 0xB0A4D


class BareKV(rpc_pb2_grpc.KVServicer):
    """Put/Range/Txn(puts) into a dict, with a revision counter and a header like etcd's."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.rev = 1  # etcd's first revision of an empty store
        self.watches = BareWatch(self)

    def _header(self, header: rpc_pb2.ResponseHeader) -> None:
        header.cluster_id = CLUSTER_ID
        header.member_id = MEMBER_ID
        header.revision = self.rev
        header.raft_term = 2

    async def Put(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self.rev += 1
        self.data[request.key] = request.value
        self.watches.notify(request.key, request.value)
        resp = rpc_pb2.PutResponse()
        self._header(resp.header)
        return resp

    async def Range(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        resp = rpc_pb2.RangeResponse()
        self._header(resp.header)
        if request.range_end:  # a scan is rare here: benchmarks read single keys
            keys = sorted(k for k in self.data
                          if k >= request.key and (request.range_end == b"\0"
                                                   or k < request.range_end))
        else:
            keys = [request.key] if request.key in self.data else []
        for k in keys:
            kv = resp.kvs.add()
            kv.key, kv.value = k, self.data[k]
            kv.mod_revision = kv.create_revision = self.rev
            kv.version = 1
        resp.count = len(keys)
        return resp

    async def Txn(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        """Unconditional puts only (no compares, no reads): what benchmarks' Txns and the
        generators' prefill send. One revision for the whole Txn, as in etcd."""
        self.rev += 1
        resp = rpc_pb2.TxnResponse(succeeded=True)
        for op in request.success:
            if op.WhichOneof("request") != "request_put":
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "bare server: puts only")
            self.data[op.request_put.key] = op.request_put.value
            self.watches.notify(op.request_put.key, op.request_put.value)
            self._header(resp.responses.add().response_put.header)
        self._header(resp.header)
        return resp


def _watched(key: bytes, start: bytes, end: bytes) -> bool:
    """Whether a watch of `start` (`end` empty) or of [start, end) sees a put to `key`."""
    if not end:
        return key == start
    return start <= key and (end == b"\0" or key < end)


class BareWatch(rpc_pb2_grpc.WatchServicer):
    """Each put goes to every watcher whose key or range it is in, as a response of its own
    (etcdpy joins events waiting for one watcher into one response, and etcd does for a
    watcher catching up; this never does); creates are answered, cancels
    and start revisions ignored: there is no history. A stream's responses wait in an
    unbounded queue (the benchmark's load is bounded)."""

    def __init__(self, kv: BareKV) -> None:
        self._kv = kv  # for the header's revision
        # (stream's queue, watch id) -> (key, range end: b"" one key, b"\0" every key after)
        self._watchers: dict[tuple[asyncio.Queue[rpc_pb2.WatchResponse], int],
                             tuple[bytes, bytes]] = {}

    def notify(self, key: bytes, value: bytes) -> None:
        for (queue, watch_id), (start, end) in self._watchers.items():
            if _watched(key, start, end):
                resp = rpc_pb2.WatchResponse(watch_id=watch_id)
                self._kv._header(resp.header)
                kv = resp.events.add().kv
                kv.key, kv.value = key, value
                kv.mod_revision = kv.create_revision = self._kv.rev
                kv.version = 1
                queue.put_nowait(resp)

    async def Watch(self, request_iterator, context):  # type: ignore[no-untyped-def]  # noqa: N802
        queue: asyncio.Queue[rpc_pb2.WatchResponse] = asyncio.Queue()
        ids: list[int] = []

        async def read_requests() -> None:
            async for request in request_iterator:
                if request.WhichOneof("request_union") != "create_request":
                    continue
                create = request.create_request
                ids.append(len(ids))
                resp = rpc_pb2.WatchResponse(watch_id=ids[-1], created=True)
                self._kv._header(resp.header)
                queue.put_nowait(resp)
                self._watchers[(queue, ids[-1])] = (create.key, create.range_end)

        reader = asyncio.create_task(read_requests())
        try:
            while True:
                yield await queue.get()
        finally:  # the client went away
            reader.cancel()
            for watch_id in ids:
                self._watchers.pop((queue, watch_id), None)


class BareLease(rpc_pb2_grpc.LeaseServicer):
    """Grant hands out increasing ids; a keep-alive answers each request with the TTL its lease
    was granted (0 for an id never granted, as etcd answers an unknown lease). Nothing expires."""

    def __init__(self, kv: BareKV) -> None:
        self._kv = kv  # for the header's revision
        self._ttls: dict[int, int] = {}
        self._next_id = 0x694D0000

    async def LeaseGrant(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        lease_id = request.ID
        if lease_id == 0:
            self._next_id += 1
            lease_id = self._next_id
        self._ttls[lease_id] = request.TTL
        resp = rpc_pb2.LeaseGrantResponse(ID=lease_id, TTL=request.TTL)
        self._kv._header(resp.header)
        return resp

    async def LeaseKeepAlive(self, request_iterator, context):  # type: ignore[no-untyped-def]  # noqa: N802
        async for request in request_iterator:
            resp = rpc_pb2.LeaseKeepAliveResponse(ID=request.ID,
                                                  TTL=self._ttls.get(request.ID, 0))
            self._kv._header(resp.header)
            yield resp


def add_to(server: grpc.aio.Server) -> BareKV:
    """Register a fresh BareKV on `server` and return it."""
    kv = BareKV()
    rpc_pb2_grpc.add_KVServicer_to_server(kv, server)
    return kv


async def serve(host: str, port: int, count: int) -> None:
    kv = BareKV()
    lease = BareLease(kv)
    servers = []
    for _ in range(count):
        server = grpc.aio.server(options=[("grpc.so_reuseport", int(count > 1))])
        rpc_pb2_grpc.add_KVServicer_to_server(kv, server)
        rpc_pb2_grpc.add_LeaseServicer_to_server(lease, server)
        rpc_pb2_grpc.add_WatchServicer_to_server(kv.watches, server)
        port = server.add_insecure_port(f"{host}:{port}")  # port 0: the others take the same
        await server.start()
        servers.append(server)
    print(f"bare grpc.aio KV server ({count} servers) on {host}:{port}", flush=True)
    gctuning.freeze_after_startup()  # as a member does once it serves
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.gather(*(server.stop(grace=None) for server in servers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    ap.add_argument("--servers", type=int, default=RELAYED_SERVERS,
                    help="grpc.aio servers on the port (default: as many as a member runs)")
    args = ap.parse_args()
    # The process tuning every etcdpy process gets (malloc thresholds, garbage collector), so
    # that the yardstick differs from a member only in what a member does per request.
    allocator.tune()
    gctuning.tune()
    eventloop.run(serve(args.host, args.port, args.servers))  # the member's loop, like for like


if __name__ == "__main__":
    main()

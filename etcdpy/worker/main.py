"""A read worker process: `python -m etcdpy.worker` (started by `pool.ReadWorkers`).

It accepts on the member's client port next to the member (netshare.front's child loop),
relays gRPC connections to its own grpc.aio server on a Unix socket, and passes every other
connection back to the member. Its server answers Range from the state env read-only and
passes everything else to the member. It exits when the member closes the control socket or
dies (end of file), so it never outlives the member.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
from pathlib import Path

import grpc

from etcdpy import allocator, eventloop, gctuning, logutil
from etcdpy.netshare.accept import RelayMode
from etcdpy.netshare.front import add_child_arguments, serve_front_child
from etcdpy.server.api.grpc_server import server_options
from etcdpy.server.api.interceptor import GRPC_OVERHEAD_BYTES

from .control import ControlReadIndex
from .local import MEMBER_KEYS, LocalRange, local_handlers
from .passthrough import Counters, PassThrough
from .reader import StateReader
from .readindex import ReadIndexBatcher
from .status import StatusView
from .writes import BatchedWrites, ControlWrites

log = logutil.get("worker")

# The channel to the member carries whatever clients send and receive; the member enforces
# the limits, so this hop must not impose its own.
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="etcdpy.worker")
    add_child_arguments(ap)
    ap.add_argument("--member-unix", required=True, help="the member's gRPC Unix socket")
    ap.add_argument("--member-writes", required=True,
                    help="the member's Unix socket for batched writes (writes.py)")
    ap.add_argument("--state-dir", required=True, help="<data-dir>/member/state")
    ap.add_argument("--map-size", type=int, required=True)
    ap.add_argument("--cluster-id", type=int, required=True)
    ap.add_argument("--member-id", type=int, required=True)
    ap.add_argument("--max-request-bytes", type=int, required=True)
    ap.add_argument("--keepalive-min-time", type=float, default=5.0)
    ap.add_argument("--index", type=int, default=0, help="which worker (for the logs)")
    ap.add_argument("--grpc-listen", default=None,
                    help="host:port to bind gRPC on beside the member (SO_REUSEPORT) instead "
                         "of accepting on the member's shared listener")
    return ap.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    (own_unix,) = args.unix  # the one socket of this worker's own gRPC server
    counters = Counters()
    status = StatusView()
    reader = StateReader(Path(args.state_dir), args.map_size)
    channel = grpc.aio.insecure_channel(f"unix:{args.member_unix}", options=CHANNEL_OPTIONS)
    passthrough = PassThrough(channel, counters)
    read_index = ControlReadIndex(os.dup(args.control_fd))

    def on_message(message: bytes) -> None:
        """The member's messages: read index answers and status."""
        if not read_index.on_message(message):
            status.on_message(message)

    batcher = ReadIndexBatcher(read_index, counters)
    local_range = LocalRange(reader, batcher, status, passthrough, args.cluster_id,
                             args.member_id, args.max_request_bytes + GRPC_OVERHEAD_BYTES,
                             counters)
    control_writes = ControlWrites(args.member_writes)
    writes = BatchedWrites(control_writes, passthrough,
                           args.max_request_bytes + GRPC_OVERHEAD_BYTES, MEMBER_KEYS, counters)
    server = grpc.aio.server(options=server_options(args.max_request_bytes,
                                                    args.keepalive_min_time,
                                                    reuse_port=args.grpc_listen is not None))
    server.add_generic_rpc_handlers([local_handlers(local_range, counters, writes.handlers()),
                                     passthrough])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(own_unix)  # left by a worker that was killed
    server.add_insecure_port(f"unix:{own_unix}")
    if args.grpc_listen is not None and server.add_insecure_port(args.grpc_listen) == 0:
        raise OSError(f"cannot listen on {args.grpc_listen} beside the member")
    await server.start()
    batcher.start()
    control_writes.start()
    log.info("read worker serving", index=args.index, pid=os.getpid())
    gctuning.freeze_after_startup()
    try:
        await serve_front_child(args.listen_fd, args.control_fd, args.unix,
                                RelayMode(args.relay), args.max_connections, args.sniff_timeout,
                                on_message)
    finally:
        log.info("read worker stopping", index=args.index, pid=os.getpid(), **{
            "local-ranges": counters.local_ranges, "proxied-calls": counters.proxied_calls,
            "read-index-calls": counters.read_index_calls,
            "batched-writes": counters.batched_writes})
        await server.stop(grace=1.0)
        await batcher.stop()
        await control_writes.stop()
        read_index.close()
        await channel.close()
        reader.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(own_unix)


def main(argv: list[str] | None = None) -> None:
    allocator.tune()
    gctuning.tune()
    args = parse_args(argv)
    logutil.setup(args.log_level)
    # The member decides when we stop (by closing the control socket); a terminal's Ctrl-C
    # reaches the whole process group, and the member's orderly shutdown should win.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    eventloop.run(serve(args))

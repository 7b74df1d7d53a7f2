"""etcdserverpb.Watch: one bidirectional stream carries many watchers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.server.etcdserver import EtcdServer


class WatchServicer(pb_grpc.WatchServicer):
    def __init__(self, server: EtcdServer, fragment_over_bytes: int | None = None) -> None:
        self._server = server
        # etcd's watch server splits a fragmenting watcher's response only above
        # --max-request-bytes plus the gRPC overhead allowance, not above the bare limit.
        self._fragment_over_bytes = fragment_over_bytes or server.max_request_bytes

    async def Watch(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.WatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchResponse]:
        hub = self._server.watch_hub
        stream = hub.new_stream(self._fragment_over_bytes)

        async def read_requests() -> None:
            async for request in request_iterator:
                which = request.WhichOneof("request_union")
                if which == "create_request":
                    stream.create(request.create_request)
                elif which == "cancel_request":
                    stream.cancel(request.cancel_request.watch_id)
                elif which == "progress_request":
                    stream.request_progress()

        reader = asyncio.create_task(read_requests())
        try:
            while True:
                get = asyncio.ensure_future(stream.queue.get())
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    # The client closed its side: etcd keeps sending until the RPC ends; we
                    # end the stream once nothing is queued.
                    if reader.exception() is not None or stream.queue.empty():
                        return
                    continue
                resp = get.result()
                hub.stream_drained()
                self._server.fill_header(resp.header, keep_revision=True)
                yield resp
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            stream.close()

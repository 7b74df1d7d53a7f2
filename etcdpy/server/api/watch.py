"""etcdserverpb.Watch: one bidirectional stream carries many watchers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.server import errors
from etcdpy.server.api.interceptor import GRPC_OVERHEAD_BYTES, lost_leader, requires_leader
from etcdpy.server.auth_perms import PermType
from etcdpy.server.etcdserver import EtcdServer

# The cancel reason is the text of the gRPC error, as grpc-go prints it.
PERMISSION_DENIED_REASON = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"


class WatchServicer(pb_grpc.WatchServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def Watch(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.WatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchResponse]:
        hub = self._server.watch_hub
        # etcd fragments a watch response only above --max-request-bytes plus the same 512 KiB
        # of gRPC overhead it allows on requests.
        stream = hub.new_stream(self._server.max_request_bytes + GRPC_OVERHEAD_BYTES)

        async def read_requests() -> None:
            async for request in request_iterator:
                which = request.WhichOneof("request_union")
                if which == "create_request":
                    if not self._permitted(request.create_request):
                        # etcd answers a watch the user may not read with a created-and-
                        # canceled response; the stream stays usable for other watches.
                        await stream.queue.put(_denied(request.create_request, hub.revision))
                        continue
                    stream.create(request.create_request)
                elif which == "cancel_request":
                    stream.cancel(request.cancel_request.watch_id)
                elif which == "progress_request":
                    stream.request_progress()

        reader = asyncio.create_task(read_requests())
        waits: set[asyncio.Future[Any]] = {reader}
        monitor: asyncio.Task[None] | None = None
        if requires_leader(context):
            monitor = asyncio.create_task(lost_leader(self._server))
            waits.add(monitor)
        try:
            while True:
                if monitor is not None and monitor.done():
                    # etcd cancels watch streams that required a leader once there has been
                    # none for three election timeouts (clients then retry elsewhere).
                    error = errors.NoLeader()
                    await context.abort(grpc.StatusCode[error.code], error.message)
                # Responses waiting: take the next at once. Waiting on the queue and the other
                # tasks costs more than sending a response, and a busy stream (a fan-out)
                # would pay it for every one.
                resp = stream.take()
                if resp is None:
                    get = asyncio.ensure_future(stream.queue.get())
                    done, _ = await asyncio.wait({get, *waits},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if get not in done:
                        get.cancel()
                        if reader in done:
                            if reader.exception() is not None:
                                return
                            # The client closed its sending side (half-close): like etcd,
                            # keep the watchers it created and keep sending until the RPC
                            # itself ends.
                            waits.discard(reader)
                        continue
                    resp = get.result()
                hub.stream_drained()
                self._server.fill_header(resp.header, keep_revision=True)
                yield resp
        finally:
            if monitor is not None:
                monitor.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            stream.close()

    def _permitted(self, creq: pb.WatchCreateRequest) -> bool:
        auth = self._server.auth
        if not auth.enabled:
            return True
        try:
            auth.check_op(auth.info(), PermType.READ, creq.key or b"\x00", creq.range_end)
        except errors.EtcdError:
            return False
        return True


def _denied(creq: pb.WatchCreateRequest, revision: int) -> pb.WatchResponse:
    resp = pb.WatchResponse(watch_id=creq.watch_id, created=True, canceled=True,
                            cancel_reason=PERMISSION_DENIED_REASON)
    resp.header.revision = revision
    return resp

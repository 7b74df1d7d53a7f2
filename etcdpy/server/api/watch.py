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
from etcdpy.server.watch import SerializedEvents

MAX_TAILS = 4096  # watch ids a stream keeps a tail for (a stream may create many watchers)
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
        tails = _Tails(self._server)

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
                if resp.__class__ is SerializedEvents:
                    # Sent as it is (see interceptor._passing_bytes), its watch id and the
                    # rest of the header after it.
                    yield resp.wire(tails.of(resp.watch_id))  # type: ignore[union-attr]
                    continue
                self._server.fill_header(resp.header, keep_revision=True)  # type: ignore[union-attr]
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


class _Tails:
    """What follows a SerializedEvents on the wire: its watch id and the header fields
    fill_header sets (the revision is in the pieces). Kept per watch id while the header
    stays the same (a new term changes it)."""

    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._header = pb.ResponseHeader()
        self._tails: dict[int, bytes] = {}

    def of(self, watch_id: int) -> bytes:
        header = self._header
        server = self._server
        if (header.raft_term, header.member_id, header.cluster_id) != (
                server.term, server.member_id, server.cluster_id):
            server.fill_header(header, keep_revision=True)
            self._tails.clear()
        tail = self._tails.get(watch_id)
        if tail is None:
            if len(self._tails) >= MAX_TAILS:
                self._tails.clear()
            tail = pb.WatchResponse(watch_id=watch_id, header=header).SerializeToString()
            self._tails[watch_id] = tail
        return tail

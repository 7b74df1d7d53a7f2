"""Requests a follower cannot answer, sent on to the leader's client URL.

Only the leader tracks lease deadlines, so a keep-alive or a TimeToLive reaching a follower
is forwarded (etcd forwards them over its peer HTTP API; we use the leader's own Lease
service). Channels are kept per leader URL and reused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.server import errors
from etcdpy.server.auth import CURRENT_TOKEN
from etcdpy.server.etcdserver import EtcdServer

FORWARD_TIMEOUT_S = 5.0
# Answers of the leader that are its verdict on the request itself, passed on as they are.
VERDICTS = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                      grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN})
MAX_CHANNELS = 16  # leaders seen; bounded so a flapping cluster cannot grow it without end


def _target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 2379}"


class LeaderForwarder:
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self) -> grpc.aio.Channel:
        urls = self._server.leader_client_urls()
        if not urls:
            raise errors.NoLeader()
        target = _target(urls[0])
        channel = self._channels.get(target)
        if channel is None:
            if len(self._channels) >= MAX_CHANNELS:
                self._channels.pop(next(iter(self._channels)))
            channel = grpc.aio.insecure_channel(target)
            self._channels[target] = channel
        return channel

    def _stub(self) -> pb_grpc.LeaseStub:
        return pb_grpc.LeaseStub(self._channel())

    async def keep_alive(self, lease_id: int) -> int:
        call = self._stub().LeaseKeepAlive(timeout=FORWARD_TIMEOUT_S)
        try:
            await call.write(pb.LeaseKeepAliveRequest(ID=lease_id))
            resp = await call.read()
            await call.done_writing()
        except grpc.aio.AioRpcError:
            raise errors.LeaderChanged() from None
        finally:
            call.cancel()
        if resp is grpc.aio.EOF:
            raise errors.LeaderChanged()
        return resp.TTL

    async def time_to_live(self, request: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        try:
            return await self._stub().LeaseTimeToLive(request, timeout=FORWARD_TIMEOUT_S,
                                                      metadata=_token_metadata())
        except grpc.aio.AioRpcError as error:
            if error.code() in VERDICTS:
                # The leader judged the request (e.g. the user may not see the keys): that
                # is the answer, not a reason to retry elsewhere.
                verdict = errors.EtcdError(error.details())
                verdict.code = error.code().name
                raise verdict from None
            raise errors.LeaderChanged() from None

    async def member_promote(self, request: pb.MemberPromoteRequest) -> pb.MemberPromoteResponse:
        """Only the leader can tell whether a learner has caught up."""
        stub = pb_grpc.ClusterStub(self._channel())
        try:
            return await stub.MemberPromote(request, timeout=FORWARD_TIMEOUT_S,
                                            metadata=_token_metadata())
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                verdict = errors.EtcdError(error.details())  # keep the leader's answer
                verdict.code = "FAILED_PRECONDITION"
                raise verdict from None
            raise errors.LeaderChanged() from None


def _token_metadata() -> tuple[tuple[str, str], ...]:
    # Tokens are known to every member (Authenticate is replicated): the leader judges the
    # forwarded request as the client's own.
    token = CURRENT_TOKEN.get()
    return (("token", token),) if token is not None else ()

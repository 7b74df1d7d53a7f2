"""Requests a follower cannot answer, sent on to the leader's client URL.

Only the leader tracks lease deadlines, so a keep-alive or a TimeToLive reaching a follower
is forwarded (etcd forwards them over its peer HTTP API; we use the leader's own Lease
service). Channels are kept per leader URL and reused; keep-alives share one long-lived
LeaseKeepAlive stream to the leader (`KeepAliveStream`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
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


class KeepAliveStream:
    """One LeaseKeepAlive call to the leader carrying every keep-alive this member forwards.

    The leader answers each request of a stream with exactly one response, in order, or ends
    the stream; so the n-th answer belongs to the n-th request still waiting, and `_waiting`
    holds their futures in the order the requests were queued (grpc writes `_queue` in that
    order). A call per keep-alive cost a new HTTP/2 stream and four gRPC operations per
    renewal: a 3-member cluster's followers renewed 10,000 leases at a third of the leader's
    rate, with a 2.4 s p99.

    Once broken (the stream ended, failed, or an answer took longer than
    FORWARD_TIMEOUT_S) every waiting keep-alive fails with LeaderChanged, as a failed
    forward did before, and the forwarder opens a new stream for the next one."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._waiting: deque[asyncio.Future[int]] = deque()
        self.broken = False
        self._call = pb_grpc.LeaseStub(channel).LeaseKeepAlive(self._requests())
        self._reader = asyncio.ensure_future(self._read())

    def renewal(self, lease_id: int) -> asyncio.Future[int]:
        """The leader's TTL for `lease_id`, once it answers."""
        assert not self.broken
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[int] = loop.create_future()
        self._waiting.append(answer)
        self._queue.put_nowait(lease_id)
        # A timer rather than asyncio.wait_for (a task per renewal before Python 3.12).
        timer = loop.call_later(FORWARD_TIMEOUT_S, self.close)
        answer.add_done_callback(lambda _answer: timer.cancel())
        return answer

    def close(self) -> None:
        self.broken = True
        self._call.cancel()
        self._fail_waiting()

    async def _requests(self) -> AsyncIterator[pb.LeaseKeepAliveRequest]:
        while True:
            yield pb.LeaseKeepAliveRequest(ID=await self._queue.get())

    async def _read(self) -> None:
        try:
            async for resp in self._call:
                if not self._waiting:
                    break  # an answer nobody asked for: the pairing cannot be trusted
                answer = self._waiting.popleft()
                if not answer.done():  # its caller may have gone away
                    answer.set_result(resp.TTL)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            self.close()

    def _fail_waiting(self) -> None:
        while self._waiting:
            answer = self._waiting.popleft()
            if not answer.done():
                answer.set_exception(errors.LeaderChanged())


class LeaderForwarder:
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._keep_alives: tuple[str, KeepAliveStream] | None = None  # (target, stream)

    def _target(self) -> str:
        urls = self._server.leader_client_urls()
        if not urls:
            raise errors.NoLeader()
        return _target(urls[0])

    def _channel(self, target: str | None = None) -> grpc.aio.Channel:
        target = target or self._target()
        channel = self._channels.get(target)
        if channel is None:
            if len(self._channels) >= MAX_CHANNELS:
                self._channels.pop(next(iter(self._channels)))
            channel = grpc.aio.insecure_channel(target)
            self._channels[target] = channel
        return channel

    def _stub(self) -> pb_grpc.LeaseStub:
        return pb_grpc.LeaseStub(self._channel())

    def keep_alive(self, lease_id: int) -> asyncio.Future[int]:
        """The leader's answer to a keep-alive of `lease_id` (its TTL, 0 for a lease it does
        not know), or NoLeader / LeaderChanged."""
        target = self._target()
        current = self._keep_alives
        if current is None or current[0] != target or current[1].broken:
            if current is not None:
                current[1].close()  # a leader that is gone, or a stream that failed
            current = (target, KeepAliveStream(self._channel(target)))
            self._keep_alives = current
        return current[1].renewal(lease_id)

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

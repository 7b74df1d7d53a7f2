"""Requests a follower cannot answer, sent on to the leader's client URL.

Only the leader tracks lease deadlines, so a keep-alive or a TimeToLive reaching a follower
is forwarded (etcd forwards them over its peer HTTP API; we use the leader's own Lease
service). Channels are kept per leader URL and reused; keep-alives share one long-lived
stream of batches to the leader's LeaderForward service (`KeepAliveStream`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy._pb.forwardpb import forward_pb2 as fpb
from etcdpy._pb.forwardpb import forward_pb2_grpc as forward_grpc
from etcdpy.server import errors
from etcdpy.server.auth import CURRENT_TOKEN
from etcdpy.server.etcdserver import EtcdServer

FORWARD_TIMEOUT_S = 5.0
# Answers of the leader that are its verdict on the request itself, passed on as they are.
VERDICTS = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                      grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN})
# IDs per forwarded request: 4,096 varints of at most 10 bytes stay far below the 4 MiB a
# gRPC message may hold by default.
MAX_BATCH = 4096
# Requests awaiting the leader's answer: two keep the link busy while the next batch fills.
MAX_BATCHES_IN_FLIGHT = 2
MAX_CHANNELS = 16  # leaders seen; bounded so a flapping cluster cannot grow it without end


def _target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 2379}"


class KeepAliveStream:
    """One LeaderForward.KeepAlives stream to the leader carrying, in batches, every keep-alive
    this member forwards.

    A keep-alive waits in `_pending` until the stream's writer takes everything pending as
    one request; at most MAX_BATCHES_IN_FLIGHT requests await their answers, so under load
    the keep-alives that arrive during a round trip to the leader travel together. One
    LeaseKeepAlive message per renewal (the stream before this one) cost the follower and the
    leader a gRPC message each way per renewal: three members renewed 10,000 leases at a
    twelfth of etcd's rate, with the leader's loop busy mostly on those messages.

    The leader answers each request with exactly one response holding one TTL per ID, in
    order, or ends the stream; so the n-th answer belongs to the n-th batch in `_waiting`.
    Once broken (the stream ended, failed, an answer did not fit its batch, or took longer
    than FORWARD_TIMEOUT_S) every keep-alive not yet answered fails with LeaderChanged, as a
    failed forward did before, and the forwarder opens a new stream for the next one."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        # Invariant: len(_pending_ids) == len(_pending_answers) (one answer per queued ID).
        self._pending_ids: list[int] = []
        self._pending_answers: list[asyncio.Future[int]] = []
        # Requests sent and not yet answered, oldest first: their answers and their timeout.
        self._waiting: deque[tuple[list[asyncio.Future[int]], asyncio.TimerHandle]] = deque()
        self._wake = asyncio.Event()  # set when the writer may have something to send
        self.broken = False
        self._call = forward_grpc.LeaderForwardStub(channel).KeepAlives(self._requests())
        self._reader = asyncio.ensure_future(self._read())

    def renewal(self, lease_id: int) -> asyncio.Future[int]:
        """The leader's TTL for `lease_id`, once it answers."""
        assert not self.broken
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending_ids.append(lease_id)
        self._pending_answers.append(answer)
        self._wake.set()
        return answer

    def close(self) -> None:
        self.broken = True
        self._call.cancel()
        self._fail_waiting()

    async def _requests(self) -> AsyncIterator[fpb.LeaseIDs]:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending_ids or len(self._waiting) >= MAX_BATCHES_IN_FLIGHT:
                self._wake.clear()
                await self._wake.wait()
            ids, answers = self._pending_ids[:MAX_BATCH], self._pending_answers[:MAX_BATCH]
            del self._pending_ids[:MAX_BATCH], self._pending_answers[:MAX_BATCH]
            self._waiting.append((answers, loop.call_later(FORWARD_TIMEOUT_S, self.close)))
            yield fpb.LeaseIDs(ids=ids)

    async def _read(self) -> None:
        try:
            async for resp in self._call:
                if not self._waiting or len(resp.ttls) != len(self._waiting[0][0]):
                    break  # not an answer to the oldest request: the pairing is lost
                answers, timeout = self._waiting.popleft()
                timeout.cancel()
                for answer, ttl in zip(answers, resp.ttls, strict=True):
                    if not answer.done():  # its caller may have gone away
                        answer.set_result(ttl)
                self._wake.set()  # room for another request
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            self.close()

    def _fail_waiting(self) -> None:
        unanswered = [answer for answers, _timeout in self._waiting for answer in answers]
        for _answers, timeout in self._waiting:
            timeout.cancel()
        self._waiting.clear()
        unanswered += self._pending_answers
        self._pending_ids.clear()
        self._pending_answers.clear()
        for answer in unanswered:
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

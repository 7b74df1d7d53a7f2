"""etcdpy.forward.LeaderForward: the leader's side of what followers send on in bulk.

A follower's clients' keep-alives reach the leader here, many per request
(`forward.KeepAliveStream` is the other side). Each is renewed exactly as a LeaseKeepAlive
sent to the leader would be, and answered the same way: the TTL, or 0 for a lease the leader
does not know. A member that is not the leader ends the stream with the error LeaseKeepAlive
would give, and the follower fails the keep-alives it was carrying with `leader changed`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from etcdpy._pb.forwardpb import forward_pb2 as fpb
from etcdpy._pb.forwardpb import forward_pb2_grpc as forward_grpc
from etcdpy.server.api.errors import status_code
from etcdpy.server.errors import EtcdError
from etcdpy.server.etcdserver import EtcdServer


class LeaderForwardServicer(forward_grpc.LeaderForwardServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def KeepAlives(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[fpb.LeaseIDs], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[fpb.LeaseTTLs]:
        renew = self._server.lease_renew
        async for request in request_iterator:
            ttls: list[int] = []
            for lease_id in request.ids:
                try:
                    ttls.append(renew(lease_id))
                except EtcdError as error:
                    if error.code != "NOT_FOUND":  # not the leader (any more): no verdict here
                        await context.abort(status_code(error), error.message)
                    ttls.append(0)  # unknown or expired: LeaseKeepAlive's answer is TTL 0
            yield fpb.LeaseTTLs(ttls=ttls)

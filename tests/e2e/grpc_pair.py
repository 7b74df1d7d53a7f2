"""The same gRPC requests to real etcd and to etcdpy, answers compared.

An answer is the response with the fields that name the server (cluster and member id, Raft
term) cleared, or the (status code, message) pair of an error. Client-side message size
caps are lifted so that the servers' own limits are the ones tested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.pair import Pair

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
RPC_TIMEOUT_S = 30.0


def answer(call: Callable[[], Any]) -> Any:
    """A response with the per-server header fields cleared, or (code, message)."""
    try:
        resp = call()
    except grpc.RpcError as error:
        return error.code(), error.details()
    if hasattr(resp, "header"):
        resp.header.ClearField("cluster_id")
        resp.header.ClearField("member_id")
        resp.header.ClearField("raft_term")
    return resp


class GrpcPair:
    """KV, Watch and Lease stubs on each member of a pair (etcd first)."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.channels = [grpc.insecure_channel(m.endpoint, options=CHANNEL_OPTIONS)
                         for m in pair.members]
        self.kv = [pb_grpc.KVStub(c) for c in self.channels]
        self.watch = [pb_grpc.WatchStub(c) for c in self.channels]
        self.lease = [pb_grpc.LeaseStub(c) for c in self.channels]

    def close(self) -> None:
        for c in self.channels:
            c.close()

    def both(self, method: str, request: Any, service: str = "kv") -> tuple[Any, Any]:
        stubs = getattr(self, service)
        want, got = (answer(lambda s=s: getattr(s, method)(request, timeout=RPC_TIMEOUT_S))
                     for s in stubs)
        return want, got

    def same(self, method: str, request: Any, service: str = "kv") -> Any:
        """Send to both; assert etcdpy answers exactly what etcd answers; return that."""
        want, got = self.both(method, request, service)
        assert got == want, (f"{method}({str(request)[:200]}):\n etcd   {str(want)[:400]}\n"
                             f" etcdpy {str(got)[:400]}")
        return want

    def watch_events(self, key: bytes, start_revision: int, n: int) -> list[Any]:
        """The first n events of a watch on `key` from `start_revision`, the same on both."""
        answers = []
        for stub in self.watch:
            stream = stub.Watch(iter([pb.WatchRequest(create_request=pb.WatchCreateRequest(
                key=key, start_revision=start_revision))]), timeout=RPC_TIMEOUT_S)
            events: list[Any] = []
            for resp in stream:
                events.extend(resp.events)
                if len(events) >= n:
                    break
            stream.cancel()
            answers.append(events[:n])
        assert answers[1] == answers[0]
        return answers[0]

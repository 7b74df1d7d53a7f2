"""ReadIndex over a worker's control socket (in-process, over a real SEQPACKET socket pair):
answers and the member's errors reach the waiting call; other messages are left alone."""

from __future__ import annotations

import asyncio
import socket
import struct

import grpc
import pytest

from etcdpy._pb.workerpb import worker_pb2
from etcdpy.worker.control import ControlReadIndex
from etcdpy.worker.status import MemberStatus


def test_answers_and_errors_come_back_to_the_caller() -> None:
    async def scenario() -> None:
        worker_end, member_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        member_end.setblocking(False)
        control = ControlReadIndex(worker_end.detach())
        loop = asyncio.get_running_loop()
        try:
            call = asyncio.create_task(control(worker_pb2.ReadIndexRequest()))
            request = await loop.sock_recv(member_end, 64)
            assert request[:1] == b"R" and len(request) == 9
            assert not control.on_message(MemberStatus(3).encode())  # not an answer
            assert control.on_message(b"A" + request[1:] + struct.pack(">QQ", 41, 3))
            assert await call == worker_pb2.ReadIndexResponse(applied_index=41, raft_term=3)

            call = asyncio.create_task(control(worker_pb2.ReadIndexRequest()))
            request = await loop.sock_recv(member_end, 64)
            assert control.on_message(b"E" + request[1:] + b"UNAVAILABLE\0etcdserver: no leader")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert info.value.details() == "etcdserver: no leader"
        finally:
            control.close()
            member_end.close()

    asyncio.run(scenario())

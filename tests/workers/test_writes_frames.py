"""The batched-writes wire (etcdpy.worker.writes) on its own: frames split anyhow by the stream
arrive whole and in order, a burst leaves in one write, and a lost connection fails every
write still waiting with UNAVAILABLE (it may or may not have been applied, as when a gRPC
connection drops) while later writes take the gRPC way until it is back."""

from __future__ import annotations

import asyncio
import os
import tempfile

import grpc
import pytest

from etcdpy.worker.writes import _HEAD, MAX_FRAME, ControlWrites, Kind, _Framed


class _Recorder(_Framed):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[int, int, bytes]] = []

    def on_frame(self, seq: int, kind: int, payload: bytes) -> None:
        self.frames.append((seq, kind, payload))


def test_frames_survive_any_split() -> None:
    sent = [(1, Kind.PUT, b"a"), (2, Kind.TXN, b""), (3, Kind.OK, os.urandom(70_000))]
    stream = b"".join(_HEAD.pack(len(p), s, k) + p for s, k, p in sent)
    for chunk in (1, 7, 13, 4096, len(stream)):
        recorder = _Recorder()
        for i in range(0, len(stream), chunk):
            recorder.data_received(stream[i:i + chunk])
        assert recorder.frames == [(s, int(k), p) for s, k, p in sent]


class _Closable:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_frame_over_the_limit_closes_the_connection() -> None:
    recorder = _Recorder()
    transport = _Closable()
    recorder.transport = transport  # type: ignore[assignment]
    recorder.data_received(_HEAD.pack(1, 1, Kind.PUT) + b"a"
                           + _HEAD.pack(MAX_FRAME + 1, 2, Kind.PUT) + b"b" * 100)
    assert recorder.frames == [(1, int(Kind.PUT), b"a")]
    assert transport.closed


class _FakeMember(_Framed):
    """Records what arrives; answers OK to every frame while `answer` is set."""

    def __init__(self, log: list[bytes], answer: bool) -> None:
        super().__init__()
        self.log = log
        self.answer = answer

    def data_received(self, data: bytes) -> None:
        self.log.append(data)
        super().data_received(data)

    def on_frame(self, seq: int, kind: int, payload: bytes) -> None:
        if self.answer:
            self.send(seq, Kind.OK, b"re:" + payload)


def test_a_burst_is_one_write_and_a_lost_connection_fails_the_waiting() -> None:
    async def scenario() -> None:
        path = os.path.join(tempfile.mkdtemp(), "writes.sock")
        received: list[bytes] = []
        members: list[_FakeMember] = []

        def member() -> _FakeMember:
            members.append(_FakeMember(received, answer=len(members) == 0))
            return members[-1]

        server = await asyncio.get_running_loop().create_unix_server(member, path)
        control = ControlWrites(path)
        assert control.submit(Kind.PUT, b"early") is None  # not connected: the gRPC way
        control.start()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if members:
                break
        answers = [control.submit(Kind.PUT, b"%d" % i) for i in range(50)]
        assert all(a is not None for a in answers)
        got = await asyncio.gather(*answers)  # type: ignore[arg-type]
        assert got == [(Kind.OK, b"re:%d" % i) for i in range(50)]
        assert len(received) == 1  # fifty frames, one write

        members[0].answer = False
        waiting = control.submit(Kind.TXN, b"never answered")
        assert waiting is not None
        await asyncio.sleep(0.05)
        assert members[0].transport is not None
        members[0].transport.close()  # the member goes away with the write unanswered
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await waiting
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert control.submit(Kind.PUT, b"meanwhile") is None
        for _ in range(300):  # reconnects by itself
            await asyncio.sleep(0.01)
            if len(members) == 2:
                break
        assert len(members) == 2
        await control.stop()
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())

"""Online defragmentation (`etcdpy.server.backend.defragment`) while the event loop keeps
writing: a copy taken while writes landed is never swapped in, and after the bounded retries
the copy taken with the loop held keeps every write."""

from __future__ import annotations

import asyncio
import logging

import pytest

from etcdpy.server import backend
from etcdpy.storage.defrag import temp_copy_path
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.mvcc import KVStore

from .conftest import Applier


async def _defrag_while_writing(envs: MemberEnvs, write_every_turn: bool) -> int:
    app = Applier(KVStore(envs.state))
    for i in range(200):
        app.put(b"k%03d" % (i % 20), b"v" * 1000)
    done = asyncio.Event()
    writes = 0

    async def writer() -> None:
        nonlocal writes
        # bounded: stops when the defragmentation is done, or after 100k turns
        for n in range(100_000):
            if done.is_set():
                return
            if write_every_turn:
                app.put(b"during/%06d" % n, b"w")
                writes += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    result = await backend.defragment(envs.state)
    done.set()
    await task
    assert result.size_after <= result.size_before
    assert not temp_copy_path(envs.state).exists()
    store = KVStore(envs.state)  # what a restart would see
    assert store.current_rev == app.store.current_rev
    assert store.range(b"during/", b"during0").count == writes
    app.put(b"after", b"x")  # still writable
    return writes


@pytest.mark.parametrize("write_every_turn", [False, True])
def test_defragment_keeps_every_write(envs: MemberEnvs, write_every_turn: bool,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="etcdpy.maintenance")
    writes = asyncio.run(_defrag_while_writing(envs, write_every_turn))
    assert (writes > 0) == write_every_turn
    # A write lands on every loop turn, so while each background copy runs (the loop turns
    # at least once before the worker thread's result is delivered): every copy is stale and
    # the last resort, a copy with the loop held, is what gets swapped in.
    fell_back = "writes continued during every background copy" in caplog.text
    assert fell_back == write_every_turn

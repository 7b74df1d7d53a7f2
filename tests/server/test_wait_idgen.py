"""The wait registry and the ID generator."""

import asyncio

import pytest

from etcdpy.server.errors import Stopped
from etcdpy.server.idgen import IdGenerator
from etcdpy.server.wait import Wait


def test_ids_carry_member_prefix_and_increase() -> None:
    gen = IdGenerator(member_id=0x2E1259D415F2A040, now_ms=1_700_000_000_000)
    ids = [gen.next() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(i >> 48 == 0xA040 for i in ids)
    other = IdGenerator(member_id=0x1234, now_ms=1_700_000_000_000)
    assert not set(ids) & {other.next() for _ in range(1000)}


def test_lease_ids_are_positive_int64() -> None:
    gen = IdGenerator(member_id=0xFFFF, now_ms=1)
    for _ in range(100):
        lease_id = gen.next_lease_id()
        assert 0 < lease_id < 1 << 63


def test_wait_trigger_cancel_and_fail_all() -> None:
    async def scenario() -> None:
        wait = Wait()
        done = wait.register(1)
        failing = wait.register(2)
        gone = wait.register(3)
        wait.trigger(1, "ok")
        wait.trigger(99, "nobody waits")  # entries proposed elsewhere
        wait.cancel(3)
        assert await done == "ok"
        assert gone.cancelled()
        wait.fail_all(Stopped())
        with pytest.raises(Stopped):
            await failing
        assert len(wait) == 0

    asyncio.run(scenario())

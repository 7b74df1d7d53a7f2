"""eventloop.run: uvloop's loop unless ETCDPY_EVENT_LOOP=asyncio asks for the standard one."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from etcdpy import eventloop


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_processes_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.CHOICE_VAR, raising=False)
    assert eventloop.loop_factory() is uvloop.new_event_loop
    assert eventloop.run(_loop_module()).startswith("uvloop")


def test_the_standard_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.CHOICE_VAR, "asyncio")
    assert eventloop.loop_factory() is None
    assert eventloop.run(_loop_module()).startswith("asyncio")


def test_run_hands_back_the_result_and_the_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.CHOICE_VAR, raising=False)

    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise LookupError("nope")

    assert eventloop.run(answer()) == 42
    with pytest.raises(LookupError, match="nope"):
        eventloop.run(fail())

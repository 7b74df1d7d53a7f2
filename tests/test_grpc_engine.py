"""grpc_engine.choose_poller: the polling engine is asked for only when it can still matter."""

from __future__ import annotations

import os

import grpc
import pytest

from etcdpy import grpc_engine


def test_an_environment_without_a_choice_gets_the_poller() -> None:
    env: dict[str, str] = {"PATH": "/usr/bin"}
    assert grpc_engine.choose_poller(env) is True
    assert env == {"PATH": "/usr/bin", "GRPC_EXPERIMENTS": grpc_engine.POLLER_EXPERIMENTS}


@pytest.mark.parametrize("operator_value", ["", "event_engine_listener", "-some_other"])
def test_the_operators_own_grpc_experiments_stand(operator_value: str) -> None:
    env = {"GRPC_EXPERIMENTS": operator_value}
    assert grpc_engine.choose_poller(env) is False
    assert env == {"GRPC_EXPERIMENTS": operator_value}


def test_once_grpc_is_imported_the_process_environment_is_left_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert grpc.__version__  # imported by this module: gRPC has read its experiments already
    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    assert grpc_engine.choose_poller() is False
    assert "GRPC_EXPERIMENTS" not in os.environ


def test_the_experiments_are_ones_the_installed_grpc_knows() -> None:
    # gRPC prints an error line for an experiment it does not know (a renamed or retired one)
    import subprocess
    import sys

    probe = ("import grpc, asyncio\n"
             "async def main():\n"
             "    s = grpc.aio.server(); s.add_insecure_port('127.0.0.1:0'); await s.start()\n"
             "    await s.stop(None)\n"
             "asyncio.run(main())\n")
    env = {**os.environ, "GRPC_EXPERIMENTS": grpc_engine.POLLER_EXPERIMENTS}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, timeout=60, check=True)
    assert "Unknown experiment" not in out.stderr, out.stderr

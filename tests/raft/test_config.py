"""RaftConfig.validate() refuses settings the core cannot run with."""

from __future__ import annotations

import pytest

from etcdpy.raft import ConfigInvalid, RaftConfig


@pytest.mark.parametrize(
    "kw",
    [
        {"id": 0},
        {"id": 1, "heartbeat_tick": 0},
        {"id": 1, "election_tick": 1, "heartbeat_tick": 1},
        {"id": 1, "max_inflight_msgs": 0},
        {"id": 1, "max_uncommitted_entries_size": 0},
        {"id": 1, "max_inflight_bytes": 10, "max_size_per_msg": 100},
        {"id": 1, "read_only_lease_based": True, "check_quorum": False},
    ],
)
def test_invalid(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigInvalid):
        RaftConfig(**kw).validate()  # type: ignore[arg-type]


def test_defaults_are_valid() -> None:
    RaftConfig(id=1).validate()

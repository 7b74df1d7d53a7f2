"""RaftConfig: the knobs of one Raft node, checked by validate()."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .errors import ConfigInvalid


@dataclass
class RaftConfig:
    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = 1 << 26
    max_uncommitted_entries_size: int = 1 << 30
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 0  # 0 = no byte limit
    check_quorum: bool = True
    pre_vote: bool = True
    read_only_lease_based: bool = False
    disable_proposal_forwarding: bool = False
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def validate(self) -> None:
        if self.id <= 0:
            raise ConfigInvalid("cannot use 0 (or a negative number) as id")
        if self.heartbeat_tick <= 0:
            raise ConfigInvalid("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigInvalid("election tick must be greater than heartbeat tick")
        if self.applied < 0:
            raise ConfigInvalid("applied must not be negative")
        if self.max_size_per_msg <= 0:
            raise ConfigInvalid("max size per msg must be greater than 0")
        if self.max_committed_size_per_ready <= 0:
            raise ConfigInvalid("max committed size per ready must be greater than 0")
        if self.max_uncommitted_entries_size <= 0:
            raise ConfigInvalid("max uncommitted entries size must be greater than 0")
        if self.max_inflight_msgs <= 0:
            raise ConfigInvalid("max inflight messages must be greater than 0")
        if self.max_inflight_bytes < 0:
            raise ConfigInvalid("max inflight bytes must not be negative")
        if 0 < self.max_inflight_bytes < self.max_size_per_msg:
            raise ConfigInvalid("max inflight bytes must be >= max message size")
        if self.read_only_lease_based and not self.check_quorum:
            # A lease is only safe if a leader steps down when it loses its quorum.
            raise ConfigInvalid("check_quorum must be enabled when read_only_lease_based is")

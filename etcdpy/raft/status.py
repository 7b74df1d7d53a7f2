"""A read-only snapshot of a node's state, for the server's Status RPC and for tests."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .types import HardState, SoftState


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    inflight: int
    pending_snapshot: int


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    hard_state: HardState
    soft_state: SoftState
    applied: int
    progress: dict[int, ProgressStatus]  # empty unless this node is the leader
    lead_transferee: int

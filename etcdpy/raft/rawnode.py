"""RawNode: the API the application drives (signatures first; behaviour follows)."""

from __future__ import annotations

from .config import RaftConfig
from .status import Status
from .storage import LogStorage
from .types import ConfChange, ConfState, Message, Ready


class RawNode:
    def __init__(self, config: RaftConfig, storage: LogStorage) -> None:
        config.validate()
        self._config = config
        self._storage = storage

    def tick(self) -> None:
        raise NotImplementedError

    def campaign(self) -> None:
        raise NotImplementedError

    def propose(self, data: bytes) -> None:
        raise NotImplementedError

    def propose_conf_change(self, cc: ConfChange) -> None:
        raise NotImplementedError

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        raise NotImplementedError

    def step(self, m: Message) -> None:
        raise NotImplementedError

    def read_index(self, ctx: bytes) -> None:
        raise NotImplementedError

    def transfer_leader(self, to: int) -> None:
        raise NotImplementedError

    def report_unreachable(self, node_id: int) -> None:
        raise NotImplementedError

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        raise NotImplementedError

    def has_ready(self) -> bool:
        raise NotImplementedError

    def ready(self) -> Ready:
        raise NotImplementedError

    def advance(self) -> None:
        raise NotImplementedError

    def status(self) -> Status:
        raise NotImplementedError

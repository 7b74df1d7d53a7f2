"""The member's status as its workers see it, pushed over each worker's control socket.

Why pushed: a serializable Range asks the member nothing, yet its header carries the member's
current Raft term. The member sends its status when it changes (checked every
CHECK_INTERVAL_S) and again every RESEND_S, so a restarted worker, or one whose message was
dropped on a full socket, catches up within that.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

CHECK_INTERVAL_S = 0.02
RESEND_S = 1.0


@dataclass(frozen=True, slots=True)
class MemberStatus:
    raft_term: int = 0
    leader: int = 0
    is_learner: bool = False

    _WIRE: ClassVar[struct.Struct] = struct.Struct(">cQQ?")
    _TAG: ClassVar[bytes] = b"S"

    def encode(self) -> bytes:
        return self._WIRE.pack(self._TAG, self.raft_term, self.leader, self.is_learner)

    @classmethod
    def decode(cls, message: bytes) -> MemberStatus | None:
        """None for anything that is not a status message (ignored by the worker)."""
        if len(message) != cls._WIRE.size or message[:1] != cls._TAG:
            return None
        _, term, leader, learner = cls._WIRE.unpack(message)
        return cls(term, leader, learner)


class StatusView:
    """The worker's latest status from its member (terms only grow, so the highest is kept)."""

    def __init__(self) -> None:
        self.current = MemberStatus()

    def on_message(self, message: bytes) -> None:
        status = MemberStatus.decode(message)
        if status is not None and status.raft_term >= self.current.raft_term:
            self.current = status

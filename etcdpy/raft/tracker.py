"""Replication progress per peer (Progress, Inflights) and the ProgressTracker.

Progress state diagram (transitions live on Progress itself):

    PROBE --(append accepted)--> REPLICATE
    REPLICATE --(append rejected / unreachable)--> PROBE
    PROBE|REPLICATE --(needed entries compacted, snapshot sent)--> SNAPSHOT
    SNAPSHOT --(snapshot applied or reported)--> PROBE
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .quorum import VoteResult, committed_index, vote_result
from .status import ProgressState
from .types import ConfState


class Inflights:
    """A bounded FIFO of the last index and byte size of each in-flight append.

    Invariant: len(queue) <= size and bytes == sum of the queued sizes; the indexes are
    strictly increasing.  full() says no further append may be sent.
    """

    __slots__ = ("size", "max_bytes", "_q", "bytes")

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        assert size > 0
        self.size = size
        self.max_bytes = max_bytes
        self._q: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def add(self, index: int, nbytes: int) -> None:
        assert not self.full(), "cannot add into a full inflights"
        assert not self._q or self._q[-1][0] < index, (self._q[-1], index)
        self._q.append((index, nbytes))
        self.bytes += nbytes

    def free_le(self, to: int) -> None:
        """Forget every in-flight append whose last index is <= to (acknowledged)."""
        while self._q and self._q[0][0] <= to:
            _, b = self._q.popleft()
            self.bytes -= b
        assert self.bytes >= 0

    def free_first_one(self) -> None:
        """Forget the oldest in-flight append (its acknowledgement may have been lost)."""
        if self._q:
            _, b = self._q.popleft()
            self.bytes -= b

    def full(self) -> bool:
        return len(self._q) >= self.size or (0 < self.max_bytes <= self.bytes)

    def count(self) -> int:
        return len(self._q)

    def reset(self) -> None:
        self._q.clear()
        self.bytes = 0

    def clone(self) -> Inflights:
        c = Inflights(self.size, self.max_bytes)
        c._q = deque(self._q)
        c.bytes = self.bytes
        return c


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower.  Invariant: 0 <= match < next."""

    match: int
    next: int
    inflights: Inflights
    state: ProgressState = ProgressState.PROBE
    # In SNAPSHOT state: the index of the snapshot being sent.
    pending_snapshot: int = 0
    # Heard from within the current election timeout (check-quorum); reset every timeout.
    recent_active: bool = False
    # In PROBE: one append was sent and we wait for an answer or a heartbeat response.
    msg_app_flow_paused: bool = False
    is_learner: bool = False

    def _check(self) -> None:
        assert 0 <= self.match < self.next, (self.match, self.next)

    def _reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Resume probing one append at a time, starting right after what we know it has."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1
        self._check()

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1
        self._check()

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index
        self.next = snapshot_index + 1
        self._check()

    def sent_entries(self, count: int, nbytes: int) -> None:
        """Account for an append of `count` entries (nbytes) just sent from self.next."""
        if self.state == ProgressState.REPLICATE:
            if count > 0:
                # Optimistically assume it arrives: pipeline the next append right after.
                self.next += count
                self.inflights.add(self.next - 1, nbytes)
            self.msg_app_flow_paused = self.inflights.full()
        elif self.state == ProgressState.PROBE:
            if count > 0:
                self.msg_app_flow_paused = True
        else:
            raise AssertionError(f"sending append in state {self.state.name}")
        self._check()

    def maybe_update(self, n: int) -> bool:
        """An append up to n was accepted.  Returns whether match advanced."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.msg_app_flow_paused = False
        self.next = max(self.next, n + 1)
        self._check()
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """An append at `rejected` was refused; move next back using the follower's hint.

        Returns False when the rejection is stale (out of order) and was ignored.
        """
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            self._check()
            return True
        if self.next - 1 != rejected:
            return False  # not the probe we are waiting for
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.msg_app_flow_paused = False
        self._check()
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.msg_app_flow_paused
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def clone(self) -> Progress:
        return Progress(
            match=self.match,
            next=self.next,
            inflights=self.inflights.clone(),
            state=self.state,
            pending_snapshot=self.pending_snapshot,
            recent_active=self.recent_active,
            msg_app_flow_paused=self.msg_app_flow_paused,
            is_learner=self.is_learner,
        )

    def __str__(self) -> str:
        s = f"{self.state.name} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.msg_app_flow_paused:
            s += " paused"
        if self.pending_snapshot:
            s += f" pendingSnap={self.pending_snapshot}"
        if not self.recent_active:
            s += " inactive"
        if self.inflights.count():
            s += f" inflight={self.inflights.count()}"
            if self.inflights.full():
                s += "[full]"
        return s


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Who votes and who only learns.  Invariant: disjoint sets."""

    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        assert not self.voters & self.learners, (self.voters, self.learners)

    def conf_state(self) -> ConfState:
        return ConfState(voters=tuple(sorted(self.voters)), learners=tuple(sorted(self.learners)))

    def __str__(self) -> str:
        s = "voters=(" + " ".join(str(v) for v in sorted(self.voters)) + ")"
        if self.learners:
            s += " learners=(" + " ".join(str(v) for v in sorted(self.learners)) + ")"
        return s


@dataclass(slots=True)
class ProgressTracker:
    """The configuration, a Progress for each member, and the votes of the current election.

    Invariant: progress has exactly the keys voters | learners, and progress[i].is_learner
    iff i is a learner.
    """

    max_inflight: int
    max_inflight_bytes: int = 0
    config: TrackerConfig = field(default_factory=TrackerConfig)
    progress: dict[int, Progress] = field(default_factory=dict)
    votes: dict[int, bool] = field(default_factory=dict)

    def check(self) -> None:
        assert set(self.progress) == self.config.voters | self.config.learners
        for i, pr in self.progress.items():
            assert pr.is_learner == (i in self.config.learners), i

    def conf_state(self) -> ConfState:
        return self.config.conf_state()

    def is_singleton(self) -> bool:
        return len(self.config.voters) == 1

    def committed(self) -> int:
        """The largest index a majority of voters has durably appended."""
        acked = {i: pr.match for i, pr in self.progress.items() if not pr.is_learner}
        return committed_index(self.config.voters, acked)

    def quorum_active(self) -> bool:
        active = {i: pr.recent_active for i, pr in self.progress.items() if not pr.is_learner}
        return vote_result(self.config.voters, active) == VoteResult.WON

    def voter_nodes(self) -> list[int]:
        return sorted(self.config.voters)

    def learner_nodes(self) -> list[int]:
        return sorted(self.config.learners)

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        """Only the first vote of each node in an election counts."""
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = sum(1 for i in self.config.voters if self.votes.get(i) is True)
        rejected = sum(1 for i in self.config.voters if self.votes.get(i) is False)
        return granted, rejected, vote_result(self.config.voters, self.votes)

    def vote_result(self, votes: dict[int, bool]) -> VoteResult:
        return vote_result(self.config.voters, votes)

"""Automatic compaction (`--auto-compaction-mode` / `--auto-compaction-retention`), etcd's way.

periodic: keep history for `period`. Revisions are sampled every tenth of min(period, 1 h);
once `period` has passed since the start (or since the last compaction, min(period, 1 h)),
the oldest sample, taken `period` ago, is compacted.

revision: every 5 minutes, compact to (current revision - retention) when that moved.

These classes only decide; the server asks them on a timer, and proposes the compaction
through Raft on the leader. Time comes in as an argument, so the rules test without a clock.
"""

from __future__ import annotations

from collections import deque

REVISION_CHECK_INTERVAL_S = 300.0
_HOUR_S = 3600.0
_SAMPLES_PER_INTERVAL = 10


class PeriodicCompactor:
    def __init__(self, period_s: float, now: float) -> None:
        assert period_s > 0
        self.period_s = period_s
        self.compact_interval_s = min(period_s, _HOUR_S)
        self.sample_interval_s = self.compact_interval_s / _SAMPLES_PER_INTERVAL
        # The oldest sample is always the revision seen `period` ago.
        self._samples: deque[int] = deque(maxlen=int(period_s / self.sample_interval_s) + 1)
        self._last_success = now
        self._wait_s = period_s  # first compaction only after a whole period

    def sample(self, now: float, current_rev: int) -> int | None:
        """Record the revision (call every `sample_interval_s`); a revision to compact or None."""
        self._samples.append(current_rev)
        if now - self._last_success < self._wait_s:
            return None
        return self._samples[0]

    def compacted(self, now: float) -> None:
        """The compaction went through (or had already been done)."""
        self._last_success = now
        self._wait_s = self.compact_interval_s


class RevisionCompactor:
    def __init__(self, retention: int) -> None:
        assert retention > 0
        self.retention = retention
        self.check_interval_s = REVISION_CHECK_INTERVAL_S
        self._last = 0

    def check(self, current_rev: int) -> int | None:
        rev = current_rev - self.retention
        if rev <= 0 or rev == self._last:
            return None
        return rev

    def compacted(self, rev: int) -> None:
        self._last = rev

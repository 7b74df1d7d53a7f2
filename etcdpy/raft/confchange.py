"""Single-member configuration changes as pure functions over copies.

`simple()` never mutates its input: it returns a new TrackerConfig and a new progress
map (with cloned Progress objects) that the core then installs.  Only one voter may be
added or removed per change, so every old and new majority overlap.
"""

from __future__ import annotations

from .errors import ConfChangeRejected
from .tracker import Inflights, Progress, TrackerConfig
from .types import ConfChange, ConfChangeType, ConfState


def _new_progress(next_index: int, is_learner: bool, max_inflight: int, max_bytes: int) -> Progress:
    # A fresh member counts as recently active, so that check-quorum does not step the
    # leader down before it could be heard from.
    return Progress(
        match=0,
        next=next_index,
        inflights=Inflights(max_inflight, max_bytes),
        is_learner=is_learner,
        recent_active=True,
    )


def _probe_from(last_index: int) -> int:
    """Where to probe a member just added: at our last entry, so the first probe carries
    an entry and goes out at once (an empty probe would wait for the next proposal)."""
    return max(last_index, 1)


def check_invariants(cfg: TrackerConfig, prs: dict[int, Progress]) -> None:
    if set(prs) != cfg.voters | cfg.learners:
        raise ConfChangeRejected(f"progress {sorted(prs)} does not match config {cfg}")
    for i, pr in prs.items():
        if pr.is_learner != (i in cfg.learners):
            raise ConfChangeRejected(f"{i} learner flag disagrees with config {cfg}")


def simple(
    cfg: TrackerConfig,
    prs: dict[int, Progress],
    last_index: int,
    cc: ConfChange,
    max_inflight: int,
    max_inflight_bytes: int = 0,
) -> tuple[TrackerConfig, dict[int, Progress]]:
    """Apply one change.  Raises ConfChangeRejected if it would leave no voter."""
    voters = set(cfg.voters)
    learners = set(cfg.learners)
    new = {i: pr.clone() for i, pr in prs.items()}
    nid = cc.node_id
    if nid == 0:
        # etcd ignores changes for node 0 (used to carry context-only changes).
        return cfg, new
    if cc.type == ConfChangeType.ADD_NODE:
        if nid in learners:
            learners.discard(nid)
            new[nid].is_learner = False
        elif nid not in voters:
            new[nid] = _new_progress(
                _probe_from(last_index), False, max_inflight, max_inflight_bytes
            )
        voters.add(nid)
    elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
        if nid in voters:
            voters.discard(nid)
            new[nid].is_learner = True
        elif nid not in learners:
            new[nid] = _new_progress(
                _probe_from(last_index), True, max_inflight, max_inflight_bytes
            )
        learners.add(nid)
    elif cc.type == ConfChangeType.REMOVE_NODE:
        voters.discard(nid)
        learners.discard(nid)
        new.pop(nid, None)
    elif cc.type == ConfChangeType.UPDATE_NODE:
        pass  # only the application's view of the member (its URLs) changes
    else:
        raise ConfChangeRejected(f"unknown conf change type {cc.type}")
    if not voters:
        raise ConfChangeRejected("removed all voters")
    out = TrackerConfig(voters=frozenset(voters), learners=frozenset(learners))
    check_invariants(out, new)
    return out, new


def restore(
    cs: ConfState, last_index: int, max_inflight: int, max_inflight_bytes: int = 0
) -> tuple[TrackerConfig, dict[int, Progress]]:
    """The configuration and fresh progress described by a ConfState (startup, snapshot)."""
    cfg = TrackerConfig(voters=frozenset(cs.voters), learners=frozenset(cs.learners))
    prs = {
        i: _new_progress(last_index + 1, i in cfg.learners, max_inflight, max_inflight_bytes)
        for i in (*cs.voters, *cs.learners)
    }
    check_invariants(cfg, prs)
    return cfg, prs

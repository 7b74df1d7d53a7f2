"""Single-member configuration changes produce new copies and keep the invariants."""

from __future__ import annotations

import pytest

from etcdpy.raft import ConfChange, ConfChangeRejected, ConfChangeType, ConfState
from etcdpy.raft.confchange import restore, simple

A, R, L = ConfChangeType.ADD_NODE, ConfChangeType.REMOVE_NODE, ConfChangeType.ADD_LEARNER_NODE


def apply(cs: ConfState, *changes: tuple[ConfChangeType, int]) -> ConfState:
    cfg, prs = restore(cs, 10, 4)
    for t, n in changes:
        cfg, prs = simple(cfg, prs, 10, ConfChange(t, n), 4)
    return cfg.conf_state()


def test_add_promote_demote_remove() -> None:
    cs = ConfState(voters=(1,))
    assert apply(cs, (A, 2)) == ConfState(voters=(1, 2))
    assert apply(cs, (L, 2)) == ConfState(voters=(1,), learners=(2,))
    assert apply(cs, (L, 2), (A, 2)) == ConfState(voters=(1, 2))  # promotion
    assert apply(cs, (A, 2), (L, 2)) == ConfState(voters=(1,), learners=(2,))  # demotion
    assert apply(cs, (A, 2), (R, 1)) == ConfState(voters=(2,))
    assert apply(cs, (L, 2), (R, 2)) == ConfState(voters=(1,))
    assert apply(cs, (A, 1)) == cs  # idempotent
    assert apply(cs, (R, 9)) == cs  # removing a stranger is a no-op


def test_cannot_remove_the_last_voter() -> None:
    with pytest.raises(ConfChangeRejected):
        apply(ConfState(voters=(1,), learners=(2,)), (R, 1))


def test_simple_does_not_mutate_its_input_and_keeps_progress() -> None:
    cfg, prs = restore(ConfState(voters=(1, 2)), 10, 4)
    prs[2].maybe_update(7)
    new_cfg, new_prs = simple(cfg, prs, 10, ConfChange(L, 3), 4)
    assert set(prs) == {1, 2} and cfg.voters == {1, 2}
    assert new_prs[2].match == 7 and new_prs[2] is not prs[2]
    assert new_prs[3].is_learner and new_prs[3].recent_active
    # A new member is probed at the last index, so the first probe carries an entry.
    assert (new_prs[3].match, new_prs[3].next) == (0, 10)
    promoted_cfg, promoted = simple(new_cfg, new_prs, 10, ConfChange(A, 3), 4)
    assert not promoted[3].is_learner and 3 in promoted_cfg.voters

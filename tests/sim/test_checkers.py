"""The invariant checkers on their own: each accepts a legal history and rejects a bad one."""

from __future__ import annotations

import pytest

from etcdpy.raft import Entry, EntryType

from .checkers import (
    ApplyOrder,
    CommitLog,
    ElectionSafety,
    Invariant,
    Membership,
    ReadChecker,
    Violation,
    check_leader_commit,
    check_snapshot,
)
from .kv import KVStore, Put


def put(term: int, index: int, key: str, value: str) -> Entry:
    return Entry(term, index, data=Put(key, value).encode())


def test_election_safety() -> None:
    es = ElectionSafety()
    es.on_leader(1, 2)
    es.on_leader(1, 2)  # the same node again (e.g. after a restart) is fine
    es.on_leader(2, 3)
    with pytest.raises(Violation) as e:
        es.on_leader(3, 2)
    assert e.value.invariant is Invariant.ELECTION_SAFETY


def test_commit_log_accepts_the_same_entry_and_rejects_a_different_one() -> None:
    log = CommitLog()
    log.record(1, put(1, 1, "a", "x"), 1)
    log.record(2, put(1, 1, "a", "x"), 1)
    assert log.max_index == 1 and log.last_put_index("a") == 1
    with pytest.raises(Violation) as e:
        log.record(3, put(2, 1, "a", "y"), 2)
    assert e.value.invariant is Invariant.COMMITTED_CHANGED


def test_overwriting_what_the_node_knew_committed_is_caught() -> None:
    log = CommitLog()
    log.check_overwrite(1, first_written=6, node_commit=5)
    with pytest.raises(Violation):
        log.check_overwrite(1, first_written=5, node_commit=5)


def test_apply_order_needs_contiguous_matching_entries() -> None:
    log = CommitLog()
    ap = ApplyOrder(log)
    ap.restore(1, 0)
    ap.on_apply(1, put(1, 1, "a", "x"), 1)
    ap.restore(2, 0)
    ap.on_apply(2, put(1, 1, "a", "x"), 1)
    with pytest.raises(Violation):
        ap.on_apply(2, put(1, 3, "a", "z"), 1)  # skipped index 2
    ap.restore(3, 0)
    with pytest.raises(Violation):
        ap.on_apply(3, put(1, 1, "a", "other"), 1)  # not what node 1 applied at 1


def test_read_index_below_the_commit_at_issue_is_stale() -> None:
    log = CommitLog()
    for i in range(1, 6):
        log.record(1, put(1, i, "k", f"v{i}"), 1)
    rc = ReadChecker(log)
    rc.issue(b"r1", node=2, key="k", now=0)
    with pytest.raises(Violation) as e:
        rc.on_read_state(2, b"r1", index=4)
    assert e.value.invariant is Invariant.STALE_READ


def test_read_that_misses_an_acknowledged_write_is_stale() -> None:
    log = CommitLog()
    log.record(1, put(1, 1, "k", "old"), 1)
    log.record(1, put(1, 2, "k", "new"), 1)
    rc = ReadChecker(log)
    rc.issue(b"r1", node=2, key="k", now=0)
    rc.on_read_state(2, b"r1", index=2)
    stale = KVStore()
    stale.apply(1, put(1, 1, "k", "old").data)
    rc.serve_ready(2, applied=1, get=stale.data)  # not applied far enough yet: waits
    assert b"r1" in rc.confirmed
    with pytest.raises(Violation):
        rc.serve_ready(2, applied=2, get=stale.data)  # claims index 2 but shows index 1


def test_fresh_read_passes_and_unknown_answers_are_ignored() -> None:
    log = CommitLog()
    log.record(1, put(1, 1, "k", "v"), 1)
    rc = ReadChecker(log, capacity=2)
    rc.issue(b"r1", node=2, key="k", now=0)
    rc.on_read_state(3, b"r1", index=9)  # another node's ReadState for this ctx: ignored
    rc.on_read_state(2, b"zz", index=0)  # unknown ctx: ignored
    rc.on_read_state(2, b"r1", index=1)
    kv = KVStore()
    kv.apply(1, put(1, 1, "k", "v").data)
    rc.serve_ready(2, applied=1, get=kv.data)
    assert rc.served == 1
    rc.issue(b"r2", node=2, key="k", now=0)
    rc.issue(b"r3", node=3, key="k", now=0)
    assert not rc.can_issue()
    rc.forget_node(2)
    rc.expire(now=100, max_age=10)
    assert rc.can_issue() and not rc.pending


def test_membership() -> None:
    m = Membership()
    m.on_leader(1, (1, 2, 3))
    with pytest.raises(Violation):
        m.on_leader(4, (1, 2, 3))  # a learner or a stranger
    m.on_removed(2)
    with pytest.raises(Violation):
        m.on_leader(2, (1, 2, 3))


def test_snapshot_must_match_the_committed_prefix() -> None:
    log = CommitLog()
    log.record(1, put(1, 1, "a", "x"), 1)
    log.record(1, Entry(1, 2, EntryType.CONF_CHANGE, b"cc"), 1)
    log.record(1, put(2, 3, "a", "y"), 2)
    good = log.state_at(3)
    check_snapshot(log, 2, 3, 2, good.encode())
    with pytest.raises(Violation):
        check_snapshot(log, 2, 3, 1, good.encode())  # wrong term
    bad = log.state_at(1)
    bad.skip(2)
    bad.skip(3)
    with pytest.raises(Violation):
        check_snapshot(log, 2, 3, 2, bad.encode())  # misses the put at 3


def test_leader_completeness_applies_to_later_terms_only() -> None:
    log = CommitLog()
    log.record(1, put(2, 1, "a", "x"), 2)
    log.record(1, put(3, 2, "a", "y"), 3)
    terms = {1: 2}  # a log that ends at index 1
    log.check_leader(2, 3, 1, 1, terms.__getitem__)  # leader of term 3 need not have 3/2
    with pytest.raises(Violation) as e:
        log.check_leader(2, 4, 1, 1, terms.__getitem__)
    assert e.value.invariant is Invariant.LEADER_COMPLETENESS
    log.check_leader(2, 4, 3, 2, lambda i: 3)  # index 1 and 2 are in its snapshot/log


def test_a_leader_commits_only_its_own_terms_entries_by_counting() -> None:
    check_leader_commit(1, term=3, commit=7, term_at_commit=3)
    with pytest.raises(Violation) as e:
        check_leader_commit(1, term=3, commit=7, term_at_commit=2)
    assert e.value.invariant is Invariant.COMMIT_RULE

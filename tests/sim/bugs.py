"""Deliberate bugs, switched on from the outside to show that the checkers have teeth.

Each bug is a test-only patch of one method of the core's classes (never an edit of
etcdpy/raft), applied for the duration of a `with enabled(name):` block and undone after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from etcdpy.raft import MessageType, RawNode, ReadState, Ready
from etcdpy.raft.log import RaftLog


def _commit_old_term(orig: Callable[..., bool]) -> Callable[..., bool]:
    def maybe_commit(self: RaftLog, max_index: int, term: int) -> bool:
        # Bug: commit whatever a quorum holds, even an entry of an earlier term (Figure 8).
        if max_index > self.committed:
            self.commit_to(max_index)
            return True
        return False

    return maybe_commit


def _no_log_up_to_date_check(orig: Callable[..., bool]) -> Callable[..., bool]:
    def is_up_to_date(self: RaftLog, lasti: int, term: int) -> bool:
        return True  # Bug: any candidate's log is "up to date enough" (§5.4.1 skipped).

    return is_up_to_date


def _vote_not_persisted(orig: Callable[..., Ready]) -> Callable[..., Ready]:
    def ready(self: RawNode) -> Ready:
        rd = orig(self)
        if rd.entries or rd.snapshot is not None:
            return rd
        # Bug: a Ready that only changes term/vote is not fsynced, and the vote response
        # leaves with the messages that need no persistence.
        votes = tuple(m for m in rd.persisted_messages if m.type == MessageType.VOTE_RESP)
        if not votes:
            return rd
        rest = tuple(m for m in rd.persisted_messages if m.type != MessageType.VOTE_RESP)
        return dataclasses.replace(
            rd, messages=rd.messages + votes, persisted_messages=rest, must_sync=False
        )

    return ready


def _ack_before_fsync(orig: Callable[..., Ready]) -> Callable[..., Ready]:
    def ready(self: RawNode) -> Ready:
        rd = orig(self)
        # Bug: append acknowledgements leave with the messages that need no persistence,
        # so a follower may acknowledge entries that a power loss then takes away.
        acks = tuple(m for m in rd.persisted_messages if m.type == MessageType.APP_RESP)
        if not acks:
            return rd
        rest = tuple(m for m in rd.persisted_messages if m.type != MessageType.APP_RESP)
        return dataclasses.replace(rd, messages=rd.messages + acks, persisted_messages=rest)

    return ready


def _read_index_local(orig: Callable[..., None]) -> Callable[..., None]:
    def read_index(self: RawNode, ctx: bytes) -> None:
        # Bug: answer at once with whatever this node believes is committed, with no trip to
        # the leader and no heartbeat round (a lagging follower or deposed leader is stale).
        self.raft.read_states.append(ReadState(self.raft.raft_log.committed, ctx))

    return read_index


# name -> (class, method name, patch factory, what the bug is)
BUGS: dict[str, tuple[type, str, Callable[[Any], Any], str]] = {
    "commit-old-term": (
        RaftLog,
        "maybe_commit",
        _commit_old_term,
        "the leader commits an entry of an earlier term by counting replicas",
    ),
    "vote-not-persisted": (
        RawNode,
        "ready",
        _vote_not_persisted,
        "the vote is not fsynced before the vote response is sent",
    ),
    "ack-before-fsync": (
        RawNode,
        "ready",
        _ack_before_fsync,
        "an append is acknowledged before the entries are fsynced",
    ),
    "read-index-local": (
        RawNode,
        "read_index",
        _read_index_local,
        "a ReadIndex request is answered from the local commit index",
    ),
    "no-log-up-to-date-check": (
        RaftLog,
        "is_up_to_date",
        _no_log_up_to_date_check,
        "votes are granted without comparing the candidate's log with ours",
    ),
}


@contextmanager
def enabled(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    if name not in BUGS:
        raise KeyError(f"unknown bug {name!r}; known: {', '.join(sorted(BUGS))}")
    cls, attr, factory, _ = BUGS[name]
    orig = cls.__dict__[attr]
    setattr(cls, attr, factory(orig))
    try:
        yield
    finally:
        setattr(cls, attr, orig)

"""A single etcdpy member with two read workers beside one without, for the worker tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Member, single_member, start_all

WORKERS = 2
WORKER_FLAGS = ("--etcdpy-read-workers", str(WORKERS))


@pytest.fixture
def with_workers(tmp_path: Path) -> Iterator[Member]:
    member = single_member("etcdpy", tmp_path, "w", WORKER_FLAGS)
    try:
        start_all([member])  # inside: a member that never serves is stopped all the same
        yield member
    finally:
        member.stop()


@pytest.fixture
def workers_and_plain(tmp_path: Path) -> Iterator[tuple[Member, Member]]:
    """(etcdpy with workers, etcdpy without): the same requests must get the same answers."""
    members = [single_member("etcdpy", tmp_path, "w", WORKER_FLAGS),
               single_member("etcdpy", tmp_path, "p")]
    try:
        start_all(members)
        yield members[0], members[1]
    finally:
        for m in members:
            m.stop()

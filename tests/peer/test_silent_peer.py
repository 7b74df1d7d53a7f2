"""A peer that goes silent (no reset, no answer) loses its stream within the keep-alive bound.

Runs tests/peer/silent_peer_child.py in a network namespace this test creates, where the
iptables rules that silence the peer touch nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import netlab
from tests.faults.cluster import REPO

pytestmark = pytest.mark.timeout(180)

# silent_peer_child.KEEPALIVE_S is 1 s: keep-alive after 1 s idle, one probe, 1 s to answer,
# and TCP_USER_TIMEOUT of 2 s for data in flight. The bound leaves room for a loaded machine.
ENDED_WITHIN_S = 15.0


@pytest.mark.parametrize("streams", ["raw", "grpc"])
def test_a_silent_peer_loses_its_stream_within_the_keepalive_bound(streams: str) -> None:
    reason = netlab.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with netlab.netlab(["solo"], tag="sp") as lab:
        argv = lab.hosts[0].command([sys.executable, "-m", "tests.peer.silent_peer_child",
                                     streams])
        done = subprocess.run(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["stream"] == streams
    assert seen["ended_after_s"] < ENDED_WITHIN_S, seen
    assert seen["delivered_after_cut"] == 0, seen  # nothing got through the cut

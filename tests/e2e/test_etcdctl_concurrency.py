"""`etcdctl lock` and `etcdctl elect`: clientv3's concurrency recipes (session lease with
keep-alive, Txn on create revision, Range sorted by create revision with
max_create_revision, Watch for the predecessor's delete) against etcdpy and real etcd."""

from __future__ import annotations

import pytest

from tests.e2e.background import background
from tests.e2e.harness import etcdctl
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e


def test_lock_runs_a_command_while_held(pair: Pair) -> None:
    out = pair.same("lock", "job", "--", "sh", "-c", "echo held; echo by=$ETCD_LOCK_KEY | cut -c1-7")
    assert out.returncode == 0 and out.stdout == "held\nby=job/\n"
    # The lock's key is gone once the command ended.
    pair.same("get", "job", "--prefix", "--keys-only")


def test_contended_lock_waits_for_the_holder(pair: Pair) -> None:
    outputs = []
    for m in pair.members:
        ep = [m.endpoint]
        with background(ep, "lock", "job") as holder:
            (key,) = holder.lines(1)  # the holder prints its key and holds until stopped
            assert key.startswith("job/")
            with background(ep, "lock", "job", "echo", "second") as waiter:
                # The waiter cannot run while the holder lives: it has registered its own key
                # (a later create revision) and watches the holder's. Seen once two keys exist.
                keys = etcdctl(ep, "get", "job/", "--prefix", "--keys-only").stdout.split()
                for _ in range(100):
                    if len(keys) == 2:
                        break
                    keys = etcdctl(ep, "get", "job/", "--prefix", "--keys-only").stdout.split()
                assert len(keys) == 2 and waiter.pending() == []
                holder.stop()
                outputs.append(waiter.to_exit(timeout_s=20))
    want, got = outputs
    assert got == want == (["second"], 0)


def test_elect_and_observe(pair: Pair) -> None:
    outputs = []
    for m in pair.members:
        ep = [m.endpoint]
        with background(ep, "elect", "--listen", "boss") as observer:
            with background(ep, "elect", "boss", "alice") as alice:
                seen = alice.lines(1)  # the leader key, then it campaigns until stopped
                seen += observer.lines(2)  # observer: key and proposal
                alice.stop()
            with background(ep, "elect", "boss", "bob") as bob:
                bob.lines(1)
                seen += observer.lines(2)
        outputs.append([line.split("/")[0] for line in seen])
    want, got = outputs
    assert got == want == ["boss", "boss", "alice", "boss", "bob"]

"""`etcdctl lease ...` against etcdpy, compared with real etcd 3.5.

Lease ids differ between servers and are normalised (`<id1>`, ...). A remaining TTL depends on
when the command ran, so it is replaced by `<n>` for the comparison and checked on its own to
lie between 0 and the granted TTL.
"""

from __future__ import annotations

import json
import re

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.background import background
from tests.e2e.cluster import wait_for
from tests.e2e.harness import Member, etcdctl
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e

REMAINING = re.compile(r"remaining\((\d+)s\)")
ATTACHED = re.compile(r"attached keys\(\[([^\]]*)\]\)")


def _sorted_keys(text: str) -> str:
    """etcd lists a lease's keys in a Go map's order, which varies: sort them."""
    return ATTACHED.sub(lambda m: f"attached keys([{' '.join(sorted(m.group(1).split()))}])", text)


def _remaining_ttl_masked(pair: Pair, *args: str, granted: int) -> str:
    """Run on both; every remaining TTL lies in (0, granted]; outputs equal once masked."""
    want, got = pair.run(*args)
    for out in (want, got):
        for n in REMAINING.findall(out.stdout):
            assert 0 < int(n) <= granted, out
    masked = [_sorted_keys(REMAINING.sub("remaining(<n>s)", o.stdout)) for o in (want, got)]
    assert masked[1] == masked[0] and got.returncode == want.returncode
    return masked[0]


def test_grant_timetolive_keys_revoke(pair: Pair) -> None:
    pair.grant(600)
    pair.grant(300, var="other")
    for key in ("k1", "k2"):
        pair.same("put", key, "v", "--lease", "{lease}")
    pair.same("put", "k3", "v", "--lease", "{other}")
    out = _remaining_ttl_masked(pair, "lease", "timetolive", "{lease}", granted=600)
    assert out == "lease <id1> granted with TTL(600s), remaining(<n>s)\n"
    out = _remaining_ttl_masked(pair, "lease", "timetolive", "--keys", "{lease}", granted=600)
    assert out.endswith(", attached keys([k1 k2])\n")
    assert pair.same("lease", "revoke", "{lease}").stdout == "lease <id1> revoked\n"
    # Revoking deleted both keys in one revision.
    rev = pair.same("get", "k", "--prefix", "-w", "json", json_output=True)
    assert json.loads(rev.stdout)["header"]["revision"] == 5
    assert json.loads(rev.stdout)["kvs"][0]["key"] == "azM="  # k3 only
    pair.same("lease", "timetolive", "{lease}")
    pair.same("lease", "timetolive", "--keys", "{lease}", "-w", "json", json_output=True)
    pair.same("lease", "revoke", "{lease}")  # already gone: NotFound
    pair.same("lease", "revoke", "1234abcd")


def test_timetolive_json_and_fields(pair: Pair) -> None:
    pair.grant(100)
    pair.same("put", "k", "v", "--lease", "{lease}")
    want, got = pair.each("lease", "timetolive", "--keys", "{lease}", "-w", "json")
    shapes = []
    for r in (want, got):
        resp = json.loads(r.stdout)
        assert 0 < resp["ttl"] <= 100 and resp["granted-ttl"] == 100
        assert resp["keys"] == ["aw=="]
        shapes.append(sorted(resp))
    assert shapes[1] == shapes[0]


def test_grant_edge_ttls(pair: Pair) -> None:
    pair.same("lease", "grant", "1")  # the answer shows the TTL asked for
    pair.same("lease", "grant", "9000000000")
    too_large = pair.same("lease", "grant", "9000000001")
    assert "etcdserver: too large lease TTL" in too_large.stderr
    pair.same("lease", "grant", "-5")
    pair.same("lease", "grant", "60", "-w", "json", json_output=True)


def test_list(pair: Pair) -> None:
    assert pair.same("lease", "list").stdout == "found 0 leases\n"
    for ttl in (100, 200, 300):
        pair.grant(ttl, var=f"l{ttl}")
    want, got = pair.each("lease", "list")
    for r, kind in ((want, "etcd"), (got, "etcdpy")):
        head, *ids = r.stdout.splitlines()
        assert head == "found 3 leases"
        # The listing order is a map's order in etcd: compare as sets.
        assert set(ids) == {pair.vars[kind][f"l{t}"] for t in (100, 200, 300)}
    want, got = pair.each("lease", "list", "-w", "json")
    assert len(json.loads(got.stdout)["leases"]) == len(json.loads(want.stdout)["leases"]) == 3


def test_keep_alive_once_and_unknown(pair: Pair) -> None:
    pair.grant(60)
    assert pair.same("lease", "keep-alive", "--once", "{lease}").stdout == \
        "lease <id1> keepalived with TTL(60)\n"
    pair.same("lease", "keep-alive", "--once", "-w", "json", "{lease}", json_output=True)
    pair.same("lease", "revoke", "{lease}")
    gone = pair.same("lease", "keep-alive", "--once", "{lease}")
    assert gone.returncode != 0


def test_keep_alive_stream_renews_until_revoked(pair: Pair) -> None:
    """`keep-alive` renews every TTL/3 s; after a revoke it reports the lease gone and exits."""
    outputs = []
    for m in pair.members:
        # Granted just before its keep-alive starts: nothing renews it before that.
        lease = etcdctl([m.endpoint], "lease", "grant", "3").stdout.split()[1]
        with background([m.endpoint], "lease", "keep-alive", lease) as ka:
            lines = ka.lines(3, timeout_s=15)
            etcdctl([m.endpoint], "lease", "revoke", lease)
            rest, code = ka.to_exit(timeout_s=15)
        outputs.append(([line.replace(lease, "<id>") for line in lines + rest], code))
    want, got = outputs
    assert got == want
    assert want[0][0] == "lease <id> keepalived with TTL(3)"
    assert want[0][-1] == "lease <id> expired or revoked."


def test_expired_lease_deletes_its_keys(etcdpy_member: Member) -> None:
    """A 2 s lease that nobody renews expires: its keys go, a watcher sees the DELETE."""
    ep = [etcdpy_member.endpoint]
    out = etcdctl(ep, "lease", "grant", "2").stdout
    lease = out.split()[1]
    etcdctl(ep, "put", "ephemeral", "v", "--lease", lease)
    rev = json.loads(etcdctl(ep, "get", "ephemeral", "-w", "json").stdout)["header"]["revision"]
    with background(ep, "watch", "--rev", str(rev + 1), "ephemeral") as w:
        assert w.lines(3, timeout_s=20) == ["DELETE", "ephemeral", ""]
    assert etcdctl(ep, "get", "ephemeral").stdout == ""
    # The lease itself is gone soon after its keys (a bounded poll, not a speed check).
    wait_for(
        "the lease to expire after its keys",
        lambda: etcdctl(ep, "lease", "timetolive", lease).stdout
        == f"lease {lease} already expired\n",
        timeout_s=10,
        interval_s=0.2,
    )


def test_remaining_ttl_is_truncated_like_etcd(pair: Pair) -> None:
    """TimeToLive a few milliseconds after the grant: etcd reports 599 of 600 seconds."""
    answers = []
    for m in pair.members:
        with grpc.insecure_channel(m.endpoint) as channel:
            stub = pb_grpc.LeaseStub(channel)
            lease_id = stub.LeaseGrant(pb.LeaseGrantRequest(TTL=600)).ID
            answers.append(stub.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease_id)).TTL)
    assert answers[0] == 599
    assert answers[1] == answers[0]

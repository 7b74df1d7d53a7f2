"""The server-side v3election Election and v3lock Lock services over gRPC, real etcd 3.5 and
etcdpy side by side: each scenario runs against a fresh server of each kind and yields a
transcript (every answer, with server ids cleared and lease ids renamed in order of first
sight); the transcripts must be equal. Revisions are compared as they are: both servers start
empty and receive the same writes in the same order.

Waiting is observed, never timed: a waiter is known to be queued once its key exists, and is
then checked to be still blocked; the point where it must return is a write the test makes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import text_format

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy._pb.v3electionpb import v3election_pb2 as epb
from etcdpy._pb.v3electionpb import v3election_pb2_grpc as epb_grpc
from etcdpy._pb.v3lockpb import v3lock_pb2 as lpb
from etcdpy._pb.v3lockpb import v3lock_pb2_grpc as lpb_grpc
from tests.e2e.background import background
from tests.e2e.cluster import FAST_TIMING, running_cluster
from tests.e2e.harness import Member
from tests.e2e.normalise import IdMap
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e

RPC_TIMEOUT_S = 30.0
POLL_ATTEMPTS = 200  # reads while waiting for a queued waiter's key to appear


@dataclass
class Side:
    """One server's stubs and the transcript of what it answered."""

    member: Member
    channel: grpc.Channel = field(init=False)
    ids: IdMap = field(default_factory=IdMap)
    transcript: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.member.endpoint)
        self.election = epb_grpc.ElectionStub(self.channel)
        self.lock = lpb_grpc.LockStub(self.channel)
        self.kv = pb_grpc.KVStub(self.channel)
        self.lease = pb_grpc.LeaseStub(self.channel)

    def norm(self, answer: Any) -> str:
        if isinstance(answer, grpc.RpcError):
            return f"{answer.code().name}: {answer.details()}"
        if answer.HasField("header"):
            for name in ("cluster_id", "member_id", "raft_term"):
                answer.header.ClearField(name)
        text = text_format.MessageToString(answer, as_one_line=True)
        text = re.sub(r"\b(lease|ID): (-?\d+)",
                      lambda m: f"{m[1]}: {self.ids.name(format(int(m[2]), 'x'))}", text)
        return re.sub(r"/([0-9a-f]{6,16})\"", lambda m: f'/{self.ids.name(m[1])}"', text)

    def call(self, what: str, rpc: Callable[..., Any], request: Any) -> Any:
        """Call, record the normalised answer under `what`, return the raw answer."""
        try:
            answer = rpc(request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as error:
            answer = error
        raw = answer
        if not isinstance(answer, grpc.RpcError):
            raw = type(answer)()
            raw.CopyFrom(answer)
        self.transcript.append(f"{what} -> {self.norm(answer)}")
        return raw

    def record(self, what: str, answer: Any) -> None:
        self.transcript.append(f"{what} -> {self.norm(answer)}")

    def grant(self, ttl: int = 60) -> int:
        return self.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl), timeout=RPC_TIMEOUT_S).ID

    def keys(self, prefix: bytes) -> list[bytes]:
        resp = self.kv.Range(pb.RangeRequest(key=prefix, range_end=prefix[:-1] + b"0",
                                             keys_only=True), timeout=RPC_TIMEOUT_S)
        return [kv.key for kv in resp.kvs]

    def until_keys(self, prefix: bytes, count: int) -> None:
        """Read until exactly `count` keys exist under `prefix` (a waiter queued or gone)."""
        for _ in range(POLL_ATTEMPTS):
            if len(self.keys(prefix)) == count:
                return
        raise AssertionError(f"{prefix!r} never had {count} keys: {self.keys(prefix)}")


Scenario = Callable[[Side], None]


def run_both(pair: Pair, scenario: Scenario) -> list[str]:
    """Run the scenario against etcd then etcdpy; their transcripts must be equal."""
    transcripts = []
    for member in pair.members:
        side = Side(member)
        try:
            scenario(side)
        finally:
            side.channel.close()
        transcripts.append(side.transcript)
    want, got = transcripts
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        assert g == w, f"step {i}:\n etcd   {w}\n etcdpy {g}"
    assert len(got) == len(want), f"etcd\n{want}\netcdpy\n{got}"
    return got


# --- single-client answers: errors, keys, headers ---


def _errors_and_answers(s: Side) -> None:
    e, lk = s.election, s.lock
    s.call("leader of an empty election", e.Leader, epb.LeaderRequest(name=b"n"))
    s.call("campaign on a missing lease", e.Campaign,
           epb.CampaignRequest(name=b"n", lease=12345, value=b"v"))
    s.call("lock on a missing lease", lk.Lock, lpb.LockRequest(name=b"n", lease=12345))
    s.call("proclaim without leader", e.Proclaim, epb.ProclaimRequest(value=b"x"))
    s.call("resign without leader", e.Resign, epb.ResignRequest())
    stranger = epb.LeaderKey(name=b"n", key=b"n/1", rev=5, lease=1)
    s.call("resign a key never campaigned", e.Resign, epb.ResignRequest(leader=stranger))
    s.call("proclaim a key never campaigned", e.Proclaim,
           epb.ProclaimRequest(leader=stranger, value=b"x"))
    s.call("unlock a missing key", lk.Unlock, lpb.UnlockRequest(key=b"zz"))
    s.call("unlock no key", lk.Unlock, lpb.UnlockRequest())
    # Lease 0: the server grants a 60 s session lease of its own.
    s.call("campaign on lease 0", e.Campaign, epb.CampaignRequest(name=b"z", value=b"v"))
    s.call("lock on lease 0", lk.Lock, lpb.LockRequest(name=b"zl"))
    s.call("leases", s.lease.LeaseLeases, pb.LeaseLeasesRequest())
    lease = s.grant()
    s.call("campaign", e.Campaign, epb.CampaignRequest(name=b"n", lease=lease, value=b"v"))
    again = s.call("campaign again, other value", e.Campaign,
                   epb.CampaignRequest(name=b"n", lease=lease, value=b"w"))
    s.call("leader", e.Leader, epb.LeaderRequest(name=b"n"))
    s.call("proclaim", e.Proclaim, epb.ProclaimRequest(leader=again.leader, value=b"p"))
    s.call("lock on the leader's own lease", lk.Lock, lpb.LockRequest(name=b"n", lease=lease))
    stale = epb.LeaderKey()
    stale.CopyFrom(again.leader)
    stale.rev -= 1
    s.call("proclaim with a stale rev", e.Proclaim, epb.ProclaimRequest(leader=stale, value=b"q"))
    s.call("resign with a stale rev", e.Resign, epb.ResignRequest(leader=stale))
    s.call("leader still", e.Leader, epb.LeaderRequest(name=b"n"))
    s.call("resign", e.Resign, epb.ResignRequest(leader=again.leader))
    s.call("leader after resign", e.Leader, epb.LeaderRequest(name=b"n"))
    s.call("proclaim after resign", e.Proclaim,
           epb.ProclaimRequest(leader=again.leader, value=b"r"))
    s.call("keys", s.kv.Range, pb.RangeRequest(key=b"\0", range_end=b"\0"))


def test_single_client_answers(pair: Pair) -> None:
    got = run_both(pair, _errors_and_answers)
    text = "\n".join(got)
    # Spot checks that the shared transcript says what etcd's recipe means.
    assert "leader of an empty election -> UNKNOWN: election: no leader" in text
    assert "campaign on a missing lease -> UNKNOWN: etcdserver: requested lease not found" in text
    assert "proclaim without leader -> UNKNOWN: \"leader\" field must be provided" in text
    assert "proclaim with a stale rev -> UNKNOWN: election: not leader" in text
    assert "unlock no key -> UNKNOWN: etcdserver: key is not provided" in text
    assert "leader after resign -> UNKNOWN: election: no leader" in text


# --- contention: the second waits for the first ---


def _lock_queue(s: Side) -> None:
    holder_lease, waiter_lease, late_lease = s.grant(), s.grant(), s.grant()
    holder = s.call("holder locks", s.lock.Lock, lpb.LockRequest(name=b"job", lease=holder_lease))
    waiter = s.lock.Lock.future(lpb.LockRequest(name=b"job", lease=waiter_lease),
                                timeout=RPC_TIMEOUT_S)
    s.until_keys(b"job/", 2)
    assert not waiter.done(), "the waiter returned while the holder held the lock"
    # A third waiter queues behind the second, not the holder.
    late = s.lock.Lock.future(lpb.LockRequest(name=b"job", lease=late_lease),
                              timeout=RPC_TIMEOUT_S)
    s.until_keys(b"job/", 3)
    s.call("holder unlocks", s.lock.Unlock, lpb.UnlockRequest(key=holder.key))
    won = waiter.result()
    s.record("waiter locks", won)
    s.call("token", s.kv.Range, pb.RangeRequest(key=won.key))
    assert not late.done(), "the third waiter passed the second"
    # The holder's lease ends (as when its process dies or stalls past the TTL): released.
    s.call("waiter's lease revoked", s.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=waiter_lease))
    third = late.result()
    s.record("third waiter locks", third)
    s.call("token", s.kv.Range, pb.RangeRequest(key=third.key))
    s.call("keys", s.kv.Range, pb.RangeRequest(key=b"job/", range_end=b"job0"))


def test_lock_waits_for_holder_in_create_revision_order(pair: Pair) -> None:
    got = run_both(pair, _lock_queue)
    # Each holder's key has a larger create revision than the last: the fencing token.
    first = int(re.findall(r"revision: (\d+)", got[0])[0])
    tokens = [int(re.findall(r"create_revision: (\d+)", line)[0])
              for line in got if line.startswith("token")]
    assert [first, *tokens] == sorted({first, *tokens})


def _lock_session_expired(s: Side) -> None:
    holder_lease, waiter_lease = s.grant(), s.grant()
    holder = s.call("holder locks", s.lock.Lock, lpb.LockRequest(name=b"m", lease=holder_lease))
    waiter = s.lock.Lock.future(lpb.LockRequest(name=b"m", lease=waiter_lease),
                                timeout=RPC_TIMEOUT_S)
    s.until_keys(b"m/", 2)
    # The waiter's lease ends while it waits: when its turn comes its key is gone.
    s.call("waiter's lease revoked", s.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=waiter_lease))
    s.call("holder unlocks", s.lock.Unlock, lpb.UnlockRequest(key=holder.key))
    try:
        s.record("waiter", waiter.result())
    except grpc.RpcError as error:
        s.record("waiter", error)


def test_lock_whose_lease_expired_while_waiting(pair: Pair) -> None:
    got = run_both(pair, _lock_session_expired)
    assert got[-1] == "waiter -> UNKNOWN: mutex: session is expired"


def _cancelled_waiters(s: Side) -> None:
    holder = s.call("holder locks", s.lock.Lock, lpb.LockRequest(name=b"c", lease=s.grant()))
    waiter = s.lock.Lock.future(lpb.LockRequest(name=b"c", lease=s.grant()),
                                timeout=RPC_TIMEOUT_S)
    s.until_keys(b"c/", 2)
    waiter.cancel()
    s.until_keys(b"c/", 1)  # the server deleted the waiter's key
    s.call("keys after the lock waiter left", s.kv.Range,
           pb.RangeRequest(key=b"c/", range_end=b"c0", keys_only=True))
    leader = s.call("alice campaigns", s.election.Campaign,
                    epb.CampaignRequest(name=b"e", lease=s.grant(), value=b"alice"))
    bob = s.election.Campaign.future(epb.CampaignRequest(name=b"e", lease=s.grant(), value=b"b"),
                                     timeout=RPC_TIMEOUT_S)
    s.until_keys(b"e/", 2)
    bob.cancel()
    s.until_keys(b"e/", 1)
    s.call("leader after bob gave up", s.election.Leader, epb.LeaderRequest(name=b"e"))
    s.call("unlock", s.lock.Unlock, lpb.UnlockRequest(key=holder.key))
    s.call("resign", s.election.Resign, epb.ResignRequest(leader=leader.leader))


def test_cancelled_waiters_withdraw_their_keys(pair: Pair) -> None:
    run_both(pair, _cancelled_waiters)


def _fencing(s: Side) -> None:
    stale_lease = s.grant()
    stale = s.call("first holder locks", s.lock.Lock,
                   lpb.LockRequest(name=b"fence", lease=stale_lease))
    token = s.kv.Range(pb.RangeRequest(key=stale.key), timeout=RPC_TIMEOUT_S).kvs[0]
    guarded = pb.Compare(result=pb.Compare.EQUAL, target=pb.Compare.CREATE, key=stale.key,
                         create_revision=token.create_revision)
    write = pb.RequestOp(request_put=pb.PutRequest(key=b"resource", value=b"first"))
    s.call("guarded write while holding", s.kv.Txn, pb.TxnRequest(compare=[guarded],
                                                                  success=[write]))
    # The first holder's lease ends behind its back (a pause or partition past the TTL)...
    s.call("first holder's lease expires", s.lease.LeaseRevoke,
           pb.LeaseRevokeRequest(ID=stale_lease))
    s.call("second holder locks", s.lock.Lock, lpb.LockRequest(name=b"fence", lease=s.grant()))
    # ...and it still believes it holds the lock: only the fenced write notices.
    s.call("guarded write after losing it", s.kv.Txn, pb.TxnRequest(compare=[guarded],
                                                                    success=[write]))


def test_a_lock_is_a_lease_with_a_fencing_token(pair: Pair) -> None:
    got = run_both(pair, _fencing)
    assert "succeeded: true" in got[1] and "succeeded: true" not in got[-1]


# --- election: campaign queue and observers ---


def _campaign_and_observe(s: Side) -> None:
    observer = s.election.Observe(epb.LeaderRequest(name=b"boss"), timeout=RPC_TIMEOUT_S)
    alice_lease, bob_lease = s.grant(), s.grant()
    alice = s.call("alice campaigns", s.election.Campaign,
                   epb.CampaignRequest(name=b"boss", lease=alice_lease, value=b"alice"))
    s.record("observed", next(observer))
    bob = s.election.Campaign.future(
        epb.CampaignRequest(name=b"boss", lease=bob_lease, value=b"bob"), timeout=RPC_TIMEOUT_S)
    s.until_keys(b"boss/", 2)
    assert not bob.done(), "bob was elected while alice leads"
    s.call("alice proclaims", s.election.Proclaim,
           epb.ProclaimRequest(leader=alice.leader, value=b"alice 2"))
    s.record("observed", next(observer))
    s.call("bob cannot proclaim", s.election.Proclaim, epb.ProclaimRequest(
        leader=epb.LeaderKey(name=b"boss", key=b"boss/%x" % bob_lease, rev=alice.leader.rev,
                             lease=bob_lease), value=b"x"))
    s.call("alice resigns", s.election.Resign, epb.ResignRequest(leader=alice.leader))
    s.record("bob elected", bob.result())
    s.record("observed", next(observer))
    s.call("leader", s.election.Leader, epb.LeaderRequest(name=b"boss"))
    # A late observer starts from the current leader.
    late = s.election.Observe(epb.LeaderRequest(name=b"boss"), timeout=RPC_TIMEOUT_S)
    s.record("late observer", next(late))
    late.cancel()
    # With no candidate left the observer waits for the next one to enter.
    bob_key = epb.LeaderKey()
    bob_key.CopyFrom(bob.result().leader)
    s.call("bob resigns", s.election.Resign, epb.ResignRequest(leader=bob_key))
    s.call("leader of an empty election", s.election.Leader, epb.LeaderRequest(name=b"boss"))
    s.call("carol campaigns", s.election.Campaign,
           epb.CampaignRequest(name=b"boss", lease=s.grant(), value=b"carol"))
    s.record("observed", next(observer))
    observer.cancel()


def test_campaign_waits_and_observers_follow_the_leader(pair: Pair) -> None:
    got = run_both(pair, _campaign_and_observe)
    observed = [line for line in got if line.startswith("observed")]
    assert [re.search(r'value: "([^"]*)"', line)[1] for line in observed  # type: ignore[index]
            ] == ["alice", "alice 2", "bob", "carol"]


# --- the client-side recipe (etcdctl) and the server-side services share one queue ---


def test_grpc_lock_waits_for_etcdctl_lock(pair: Pair) -> None:
    for member in pair.members:
        side = Side(member)
        try:
            with background([member.endpoint], "lock", "shared") as holder:
                (key,) = holder.lines(1)
                waiter = side.lock.Lock.future(lpb.LockRequest(name=b"shared", lease=side.grant()),
                                               timeout=RPC_TIMEOUT_S)
                side.until_keys(b"shared/", 2)
                assert not waiter.done(), "the gRPC Lock passed etcdctl's lock"
                holder.stop()
                got = waiter.result()
                assert got.key.startswith(b"shared/") and got.key.decode() != key
                assert side.keys(b"shared/") == [got.key]
        finally:
            side.channel.close()


def test_etcdctl_elect_observes_grpc_campaign(pair: Pair) -> None:
    seen = []
    for member in pair.members:
        side = Side(member)
        try:
            with background([member.endpoint], "elect", "--listen", "post") as observer:
                leader = side.election.Campaign(epb.CampaignRequest(
                    name=b"post", lease=side.grant(), value=b"carol"), timeout=RPC_TIMEOUT_S)
                first = observer.lines(2)
                side.election.Proclaim(epb.ProclaimRequest(leader=leader.leader, value=b"dave"),
                                       timeout=RPC_TIMEOUT_S)
                second = observer.lines(2)
            seen.append([first[0] == leader.leader.key.decode(), first[1], second[1]])
        finally:
            side.channel.close()
    assert seen[1] == seen[0] == [True, "carol", "dave"]



# --- a cluster: the services on a follower share the queue with the leader ---


def test_lock_and_election_through_a_follower(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3, FAST_TIMING) as cluster:
        lead = Side(cluster.wait_leader())
        follower = Side(cluster.followers()[0])
        try:
            holder = lead.lock.Lock(lpb.LockRequest(name=b"f", lease=lead.grant()),
                                    timeout=RPC_TIMEOUT_S)
            waiter = follower.lock.Lock.future(
                lpb.LockRequest(name=b"f", lease=follower.grant()), timeout=RPC_TIMEOUT_S)
            lead.until_keys(b"f/", 2)
            assert not waiter.done(), "the follower's waiter passed the leader's holder"
            lead.lock.Unlock(lpb.UnlockRequest(key=holder.key), timeout=RPC_TIMEOUT_S)
            won = waiter.result()
            assert follower.keys(b"f/") == [won.key] and won.key != holder.key

            observer = lead.election.Observe(epb.LeaderRequest(name=b"g"), timeout=RPC_TIMEOUT_S)
            elected = follower.election.Campaign(epb.CampaignRequest(
                name=b"g", lease=follower.grant(), value=b"on follower"), timeout=RPC_TIMEOUT_S)
            seen = next(observer)
            assert (seen.kv.key, seen.kv.value) == (elected.leader.key, b"on follower")
            assert seen.kv.create_revision == elected.leader.rev
            follower.election.Proclaim(epb.ProclaimRequest(leader=elected.leader, value=b"2"),
                                       timeout=RPC_TIMEOUT_S)
            assert next(observer).kv.value == b"2"
            observer.cancel()
        finally:
            lead.channel.close()
            follower.channel.close()

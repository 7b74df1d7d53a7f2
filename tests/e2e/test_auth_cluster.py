"""Auth across members and restarts: users, roles and tokens are replicated state.

* a user added through one member authenticates on another, and a token issued through one
  member is accepted by the others (Authenticate goes through Raft);
* every member restarted keeps users, roles, permissions and the enabled switch;
* a member that joins after the log was compacted gets the auth state in the snapshot.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.cluster import grpc_kv, running_cluster, wait_for, wait_serving
from tests.e2e.harness import Member, etcdctl

pytestmark = pytest.mark.e2e

ROOT = ("--user", "root:rootpw")
ALICE = ("--user", "alice:apw")


def make_users(member: Member, enable: bool = True) -> None:
    for step in (("user", "add", "root:rootpw"), ("user", "add", "alice:apw"),
                 ("role", "add", "r1"),
                 ("role", "grant-permission", "r1", "readwrite", "/a", "--prefix"),
                 ("user", "grant-role", "alice", "r1")):
        etcdctl([member.endpoint], *step)
    if enable:
        etcdctl([member.endpoint], "auth", "enable")


def wait_serving_as_root(member: Member) -> None:
    def probe() -> bool:
        assert member.proc is not None and member.proc.poll() is None, member.log_tail()
        r = etcdctl([member.endpoint], *ROOT, "get", "probe", timeout_s=8, check=False)
        return r.returncode == 0
    member.wait_listening()
    wait_for(f"{member.name} serving with auth", probe, interval_s=0.2)


def token_from(member: Member, user: str, password: str) -> str:
    channel = grpc.insecure_channel(member.endpoint)
    try:
        return pb_grpc.AuthStub(channel).Authenticate(
            pb.AuthenticateRequest(name=user, password=password), timeout=10).token
    finally:
        channel.close()


def test_users_and_tokens_work_on_every_member_and_survive_restart(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        m1, m2, m3 = cluster.members
        make_users(m1)
        # Added through m1, used on m3 (etcdctl authenticates against m3 itself).
        out = etcdctl([m3.endpoint], *ALICE, "put", "/a1", "v1")
        assert out.stdout == "OK\n"
        denied = etcdctl([m3.endpoint], *ALICE, "put", "/b1", "v1", check=False)
        assert denied.returncode == 1
        assert "Error: etcdserver: permission denied" in denied.stderr
        # A token issued through m1 is known to m2.
        token = token_from(m1, "alice", "apw")
        with grpc_kv(m2) as kv:
            def read() -> pb.RangeResponse:
                return kv.Range(pb.RangeRequest(key=b"/a1"), metadata=(("token", token),),
                                timeout=5)
            resp = wait_for("m2 to know the token", read)
            assert [kv.value for kv in resp.kvs] == [b"v1"]
            with pytest.raises(grpc.RpcError) as error:
                kv.Range(pb.RangeRequest(key=b"/a1"), timeout=5)
            assert error.value.details() == "etcdserver: user name is empty"
        # A follower hands TimeToLive to the leader with the client's token: root may list
        # the keys of a lease, alice may not (one key is outside her range).
        granted = etcdctl([m1.endpoint], *ROOT, "lease", "grant", "600").stdout.split()[1]
        etcdctl([m1.endpoint], *ROOT, "put", "/b/secret", "x", "--lease", granted)
        follower = cluster.followers()[0]
        ttl = etcdctl([follower.endpoint], *ROOT, "lease", "timetolive", granted, "--keys")
        assert "attached keys([/b/secret])" in ttl.stdout, ttl.stdout
        refused = etcdctl([follower.endpoint], *ALICE, "lease", "timetolive", granted,
                          "--keys", check=False)
        assert "Error: etcdserver: permission denied" in refused.stderr, refused.stderr
        before = etcdctl([m2.endpoint], *ROOT, "auth", "status").stdout

        for m in cluster.members:
            m.stop()
        spec = cluster.initial_cluster()
        for m in cluster.members:
            m.start(spec, "new")
        for m in cluster.members:
            wait_serving_as_root(m)

        for m in cluster.members:
            assert etcdctl([m.endpoint], *ROOT, "auth", "status").stdout == before
            assert etcdctl([m.endpoint], *ALICE, "get", "/a1", "--print-value-only"
                           ).stdout == "v1\n"
            assert etcdctl([m.endpoint], *ROOT, "user", "get", "alice").stdout == \
                "User: alice\nRoles: r1\n"
        # Tokens live in memory only, as etcd's simple tokens do: the old one is gone.
        with grpc_kv(m1) as kv, pytest.raises(grpc.RpcError) as error:
            kv.Range(pb.RangeRequest(key=b"/a1"), metadata=(("token", token),), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.value.details() == "etcdserver: invalid auth token"


def test_a_member_joining_from_a_snapshot_gets_the_auth_state(tmp_path: Path) -> None:
    snap = ["--snapshot-count", "20", "--experimental-snapshot-catchup-entries", "5"]
    with running_cluster(tmp_path, 3, extra_args=snap) as cluster:
        m1 = cluster.members[0]
        make_users(m1, enable=False)
        with grpc_kv(m1) as kv:
            for i in range(60):  # enough entries that the log before them is compacted
                kv.Put(pb.PutRequest(key=b"/fill/%d" % i, value=b"x"), timeout=10)
        joined = cluster.add()
        wait_serving(joined, timeout_s=60)
        assert joined.log_path is not None
        log = joined.log_path.read_text(errors="replace")
        assert "restored state from snapshot" in log, log[-3000:]
        users = etcdctl([joined.endpoint], "user", "list").stdout
        assert users == "alice\nroot\n"
        etcdctl([joined.endpoint], "auth", "enable")
        assert etcdctl([joined.endpoint], *ALICE, "get", "/a", "--prefix").returncode == 0
        denied = etcdctl([joined.endpoint], *ALICE, "get", "/fill/1", check=False)
        assert "Error: etcdserver: permission denied" in denied.stderr

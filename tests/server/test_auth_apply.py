"""Writes are judged when their entry is applied: with the identity and auth revision the
proposing member recorded, so a permission revoked (or any auth change) in between counts,
and every member reaches the same verdict. Auth changes are applied in log order within one
batch, and are committed with the applied index (replayed after a restart, not twice)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etcdpy._pb.authpb import auth_pb2 as authpb
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.internalpb import internal_pb2 as internalpb
from etcdpy.raft import ConfChange, Entry
from etcdpy.server import errors
from etcdpy.server.apply import Applier
from etcdpy.server.auth import AuthStore, hash_password
from etcdpy.server.auth_tokens import SimpleTokens
from etcdpy.server.membership import MembershipView
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.lease import Lessor
from etcdpy.storage.mvcc.kvstore import KVStore


class NoConfChanges:
    def apply_conf_change(self, change: ConfChange) -> Any:
        raise AssertionError("no conf change expected")


class Node:
    """An applier over a real state env, fed entries one request each."""

    def __init__(self, envs: MemberEnvs) -> None:
        self.store = KVStore(envs.state)
        self.auth = AuthStore(envs.state, SimpleTokens(300), bcrypt_cost=4)
        self.applier = Applier(self.store, Lessor(lambda: 0.0), NoConfChanges(),
                               MembershipView([]), 5, self.auth)
        self.index = self.store.consistent_index

    def entry(self, user: str = "", revision: int = 0, **request: Any) -> Entry:
        self.index += 1
        req = internalpb.InternalRequest(id=self.index, username=user, auth_revision=revision,
                                         **request)
        return Entry(term=1, index=self.index, data=req.SerializeToString())

    def apply(self, *entries: Entry) -> list[Any]:
        return [r for _id, r in self.applier.apply(list(entries)).results]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    envs = MemberEnvs(tmp_path)
    try:
        yield Node(envs)
    finally:
        envs.close()


def setup(node: Node) -> None:
    hashed = hash_password("pw", 4)
    node.apply(
        node.entry(auth_user_add=pb.AuthUserAddRequest(name="root", hashedPassword=hashed)),
        node.entry(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="root", role="root")),
        node.entry(auth_user_add=pb.AuthUserAddRequest(name="alice", hashedPassword=hashed)),
        node.entry(auth_role_add=pb.AuthRoleAddRequest(name="rw")),
        node.entry(auth_role_grant_permission=pb.AuthRoleGrantPermissionRequest(
            name="rw", perm=authpb.Permission(permType=authpb.Permission.READWRITE,
                                              key=b"a", range_end=b"b"))),
        node.entry(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="alice", role="rw")),
        node.entry(auth_enable=pb.AuthEnableRequest()),
    )
    assert node.auth.enabled


def test_a_write_judged_at_an_older_auth_revision_is_refused(node: Node) -> None:
    setup(node)
    rev = node.auth.revision
    put = pb.PutRequest(key=b"a1", value=b"v")
    revoke = pb.AuthUserRevokeRoleRequest(name="alice", role="rw")
    # The revoke is ahead of alice's put in the log (same batch): the put was proposed at
    # the old revision and is refused, and nothing is written.
    results = node.apply(node.entry("root", rev, auth_user_revoke_role=revoke),
                         node.entry("alice", rev, put=put))
    assert isinstance(results[0], pb.AuthUserRevokeRoleResponse)
    assert isinstance(results[1], errors.AuthOldRevision)
    assert node.store.current_rev == 1
    # Proposed again at the new revision, it is judged by the new permissions.
    (again,) = node.apply(node.entry("alice", node.auth.revision, put=put))
    assert isinstance(again, errors.PermissionDenied)


def test_writes_are_checked_at_apply(node: Node) -> None:
    setup(node)
    rev = node.auth.revision
    ok, denied, anonymous, root = node.apply(
        node.entry("alice", rev, put=pb.PutRequest(key=b"a1", value=b"v")),
        node.entry("alice", rev, delete_range=pb.DeleteRangeRequest(key=b"a", range_end=b"c")),
        node.entry(put=pb.PutRequest(key=b"a2", value=b"v")),
        node.entry("root", rev, put=pb.PutRequest(key=b"zz", value=b"v")),
    )
    assert isinstance(ok, pb.PutResponse)
    assert isinstance(denied, errors.PermissionDenied)
    assert isinstance(anonymous, errors.UserEmpty)
    assert isinstance(root, pb.PutResponse)
    assert node.store.current_rev == 3


def test_auth_changes_are_not_applied_twice_after_a_restart(tmp_path: Path) -> None:
    envs = MemberEnvs(tmp_path)
    node = Node(envs)
    setup(node)
    entries_again = [node.entry("root", node.auth.revision,
                                auth_role_add=pb.AuthRoleAddRequest(name="r2"))]
    node.apply(*entries_again)
    rev = node.auth.revision
    envs.close()
    envs = MemberEnvs(tmp_path)
    try:
        restarted = Node(envs)
        assert restarted.auth.revision == rev
        # The Raft log hands the entry over again: it is at or below the applied index.
        assert restarted.apply(*entries_again) == []
        assert restarted.auth.revision == rev
    finally:
        envs.close()

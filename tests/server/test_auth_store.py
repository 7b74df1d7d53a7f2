"""The auth store's apply and checks, on a real state env: etcd's rules, errors and revisions.

The revision numbers are the ones etcd 3.5.1 shows for the same sequence (`etcdctl auth
status` after each step, recorded against the real server).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etcdpy._pb.authpb import auth_pb2 as authpb
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.internalpb import internal_pb2 as internalpb
from etcdpy.server import errors
from etcdpy.server.auth import NOBODY, AuthInfo, AuthStore, hash_password
from etcdpy.server.auth_perms import PermType
from etcdpy.server.auth_tokens import SimpleTokens
from etcdpy.storage.auth_store import AuthRecords
from etcdpy.storage.env import MemberEnvs

READ, WRITE, READWRITE = authpb.Permission.READ, authpb.Permission.WRITE, \
    authpb.Permission.READWRITE


class Harness:
    def __init__(self, envs: MemberEnvs) -> None:
        self.envs = envs
        self.store = AuthStore(envs.state, SimpleTokens(300), bcrypt_cost=4)
        self.index = 0

    def apply(self, as_user: str = "", **request: Any) -> Any:
        """Apply one replicated request as `as_user` (at the current auth revision)."""
        self.index += 1
        req = internalpb.InternalRequest(**request)
        if as_user:
            req.username, req.auth_revision = as_user, self.store.revision
        with self.envs.state.begin(write=True) as txn:
            try:
                return self.store.apply(AuthRecords(txn, self.envs.state.dbs), req, self.index)
            except errors.EtcdError as error:
                return error

    def who(self, name: str) -> AuthInfo:
        return AuthInfo(name, self.store.revision)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    envs = MemberEnvs(tmp_path)
    try:
        yield Harness(envs)
    finally:
        envs.close()


def user_add(name: str, password: str = "pw") -> pb.AuthUserAddRequest:
    return pb.AuthUserAddRequest(name=name, hashedPassword=hash_password(password, 4))


def setup_root_and_alice(h: Harness) -> None:
    h.apply(auth_user_add=user_add("root"))
    h.apply(auth_role_add=pb.AuthRoleAddRequest(name="root"))
    h.apply(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="root", role="root"))
    h.apply(auth_user_add=user_add("alice"))
    h.apply(auth_role_add=pb.AuthRoleAddRequest(name="r1"))
    h.apply(auth_role_grant_permission=pb.AuthRoleGrantPermissionRequest(
        name="r1", perm=authpb.Permission(permType=READWRITE, key=b"/a", range_end=b"/b")))
    h.apply(auth_role_grant_permission=pb.AuthRoleGrantPermissionRequest(
        name="r1", perm=authpb.Permission(permType=READ, key=b"k1")))
    h.apply(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="alice", role="r1"))


def test_enable_needs_root_user_with_root_role(h: Harness) -> None:
    assert h.store.revision == 1 and not h.store.enabled
    assert isinstance(h.apply(auth_enable=pb.AuthEnableRequest()), errors.RootUserNotExist)
    h.apply(auth_user_add=user_add("root"))
    assert isinstance(h.apply(auth_enable=pb.AuthEnableRequest()), errors.RootRoleNotExist)
    # The root role need not exist as a role record to be granted.
    h.apply(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="root", role="root"))
    assert h.store.revision == 3
    assert isinstance(h.apply(auth_enable=pb.AuthEnableRequest()), pb.AuthEnableResponse)
    assert h.store.enabled and h.store.revision == 3  # enabling is no new revision


def test_revisions_count_like_etcd(h: Harness) -> None:
    setup_root_and_alice(h)
    assert h.store.revision == 9
    # Granting a role the user already has is accepted and changes nothing.
    h.apply(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="alice", role="r1"))
    assert h.store.revision == 9
    h.apply(auth_enable=pb.AuthEnableRequest())
    assert h.store.revision == 9
    h.apply("root", auth_disable=pb.AuthDisableRequest())
    assert h.store.revision == 10 and not h.store.enabled
    h.apply(auth_disable=pb.AuthDisableRequest())  # already disabled: a no-op
    assert h.store.revision == 10


def test_errors_of_user_and_role_management(h: Harness) -> None:
    setup_root_and_alice(h)
    cases: list[tuple[dict[str, Any], type[errors.EtcdError]]] = [
        ({"auth_user_add": user_add("alice")}, errors.UserAlreadyExist),
        ({"auth_user_add": user_add("")}, errors.UserEmpty),
        ({"auth_role_add": pb.AuthRoleAddRequest(name="r1")}, errors.RoleAlreadyExist),
        ({"auth_role_add": pb.AuthRoleAddRequest(name="")}, errors.RoleEmpty),
        ({"auth_user_grant_role": pb.AuthUserGrantRoleRequest(user="nou", role="r1")},
         errors.UserNotFound),
        ({"auth_user_grant_role": pb.AuthUserGrantRoleRequest(user="alice", role="nor")},
         errors.RoleNotFound),
        ({"auth_user_revoke_role": pb.AuthUserRevokeRoleRequest(name="root", role="r1")},
         errors.RoleNotGranted),
        ({"auth_role_revoke_permission": pb.AuthRoleRevokePermissionRequest(
            role="r1", key=b"k2")}, errors.PermissionNotGranted),
        ({"auth_role_grant_permission": pb.AuthRoleGrantPermissionRequest(name="r1")},
         errors.PermissionNotGiven),
        ({"auth_user_delete": pb.AuthUserDeleteRequest(name="nou")}, errors.UserNotFound),
        ({"auth_role_delete": pb.AuthRoleDeleteRequest(role="nor")}, errors.RoleNotFound),
    ]
    for request, error in cases:
        before = h.store.revision
        assert isinstance(h.apply(**request), error), request
        assert h.store.revision == before  # a refused change changes nothing
    h.apply(auth_enable=pb.AuthEnableRequest())
    for request in ({"auth_user_delete": pb.AuthUserDeleteRequest(name="root")},
                    {"auth_role_delete": pb.AuthRoleDeleteRequest(role="root")},
                    {"auth_user_revoke_role": pb.AuthUserRevokeRoleRequest(
                        name="root", role="root")}):
        assert isinstance(h.apply("root", **request), errors.InvalidAuthMgmt)


def test_admin_requests_need_root_once_enabled(h: Harness) -> None:
    setup_root_and_alice(h)
    h.apply(auth_enable=pb.AuthEnableRequest())
    request = {"auth_role_add": pb.AuthRoleAddRequest(name="r2")}
    assert isinstance(h.apply(**request), errors.UserEmpty)
    assert isinstance(h.apply("alice", **request), errors.PermissionDenied)
    assert isinstance(h.apply("ghost", **request), errors.UserNotFound)
    assert isinstance(h.apply("root", **request), pb.AuthRoleAddResponse)


def test_grant_permission_updates_same_range_and_keeps_key_order(h: Harness) -> None:
    h.apply(auth_role_add=pb.AuthRoleAddRequest(name="r"))
    for t, k, e in ((READ, b"z", b"\x00"), (WRITE, b"k1", b""), (READ, b"k1", b""),
                    (READ, b"/p", b"/q")):
        h.apply(auth_role_grant_permission=pb.AuthRoleGrantPermissionRequest(
            name="r", perm=authpb.Permission(permType=t, key=k, range_end=e)))
    perms = h.store.role_get(NOBODY, "r").perm
    assert [(p.key, p.range_end, p.permType) for p in perms] == [
        (b"/p", b"/q", READ), (b"k1", b"", READ), (b"z", b"\x00", READ)]


def test_permission_checks_and_stale_revisions(h: Harness) -> None:
    setup_root_and_alice(h)
    h.apply(auth_enable=pb.AuthEnableRequest())
    s = h.store
    alice = h.who("alice")
    s.check_op(alice, PermType.WRITE, b"/a1")
    s.check_range(alice, pb.RangeRequest(key=b"/a", range_end=b"/b"))
    with pytest.raises(errors.PermissionDenied):
        s.check_range(alice, pb.RangeRequest(key=b"/a", range_end=b"/c"))
    with pytest.raises(errors.PermissionDenied):  # k1 is read-only for alice
        s.check_put(alice, pb.PutRequest(key=b"k1"), lambda _lease: [])
    with pytest.raises(errors.PermissionDenied):  # a lease holding a key alice cannot write
        s.check_put(alice, pb.PutRequest(key=b"/a1", lease=7), lambda _lease: [b"k1"])
    with pytest.raises(errors.UserEmpty):
        s.check_op(NOBODY, PermType.READ, b"/a1")
    s.check_op(h.who("root"), PermType.WRITE, b"anything", b"\x00")
    stale = h.who("alice")
    h.apply("root", auth_role_add=pb.AuthRoleAddRequest(name="r3"))
    with pytest.raises(errors.AuthOldRevision):
        s.check_op(stale, PermType.READ, b"/a1")


def test_txn_checks_compares_and_nested_ops(h: Harness) -> None:
    setup_root_and_alice(h)
    h.apply(auth_enable=pb.AuthEnableRequest())
    alice = h.who("alice")
    ok = pb.TxnRequest(
        compare=[pb.Compare(key=b"/a1", target=pb.Compare.VALUE, value=b"x")],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=b"/a2"))],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=b"k1"))])
    h.store.check_txn(alice, ok)
    for bad in (
        pb.TxnRequest(compare=[pb.Compare(key=b"zz")]),
        pb.TxnRequest(failure=[pb.RequestOp(
            request_delete_range=pb.DeleteRangeRequest(key=b"k1"))]),
        pb.TxnRequest(success=[pb.RequestOp(request_txn=pb.TxnRequest(
            success=[pb.RequestOp(request_put=pb.PutRequest(key=b"zz"))]))]),
    ):
        with pytest.raises(errors.PermissionDenied):
            h.store.check_txn(alice, bad)


def test_authenticate_mints_token_and_user_changes_drop_tokens(h: Harness) -> None:
    setup_root_and_alice(h)
    auth = internalpb.InternalAuthenticateRequest(name="alice", simple_token="abcdefgh")
    assert isinstance(h.apply(authenticate=auth), errors.AuthNotEnabled)
    h.apply(auth_enable=pb.AuthEnableRequest())
    resp = h.apply(authenticate=auth)
    assert resp.token == f"abcdefgh.{h.index}"
    assert h.store.info(resp.token) == h.who("alice")
    h.apply("root", auth_user_change_password=pb.AuthUserChangePasswordRequest(
        name="alice", hashedPassword=hash_password("new", 4)))
    with pytest.raises(errors.InvalidAuthToken):
        h.store.info(resp.token)
    h.apply("root", auth_user_add=pb.AuthUserAddRequest(
        name="nopw", options=authpb.UserAddOptions(no_password=True)))
    with pytest.raises(errors.NoPasswordUser):
        h.store.login_hash("nopw")
    nopw = internalpb.InternalAuthenticateRequest(name="nopw", simple_token="x")
    assert isinstance(h.apply(authenticate=nopw), errors.AuthFailed)


def test_reads_let_users_see_themselves_and_their_roles(h: Harness) -> None:
    setup_root_and_alice(h)
    h.apply(auth_enable=pb.AuthEnableRequest())
    alice = h.who("alice")
    assert list(h.store.user_get(alice, "alice").roles) == ["r1"]
    assert len(h.store.role_get(alice, "r1").perm) == 2
    for read in (lambda: h.store.user_get(alice, "root"), lambda: h.store.user_list(alice),
                 lambda: h.store.role_get(alice, "root"), lambda: h.store.status(alice)):
        with pytest.raises(errors.PermissionDenied):
            read()
    root = h.who("root")
    assert list(h.store.user_list(root).users) == ["alice", "root"]
    assert list(h.store.role_list(root).roles) == ["r1", "root"]
    assert h.store.status(root).enabled


def test_state_survives_reopening_the_env(tmp_path: Path) -> None:
    envs = MemberEnvs(tmp_path)
    h = Harness(envs)
    setup_root_and_alice(h)
    h.apply(auth_enable=pb.AuthEnableRequest())
    h.apply("root", auth_role_delete=pb.AuthRoleDeleteRequest(role="r1"))
    envs.close()
    envs = MemberEnvs(tmp_path)
    try:
        again = AuthStore(envs.state, SimpleTokens(300))
        assert again.enabled and again.revision == 10
        root = AuthInfo("root", again.revision)
        assert list(again.user_get(root, "alice").roles) == []  # the deleted role went too
        assert list(again.role_list(root).roles) == ["root"]
        hashed, _rev = again.login_hash("alice")
        assert hashed.startswith(b"$2")
    finally:
        envs.close()


def test_an_invalid_bcrypt_cost_falls_back_to_the_default(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path) as envs:
        assert AuthStore(envs.state, SimpleTokens(300), bcrypt_cost=40).bcrypt_cost == 10
        assert AuthStore(envs.state, SimpleTokens(300), bcrypt_cost=5).bcrypt_cost == 5

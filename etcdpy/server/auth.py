"""Authentication and RBAC: the member's view of users and roles, every permission check, and
the deterministic apply of replicated auth changes (etcd's auth store).

* State: the enabled flag, the auth revision, users and roles. The records live in the state
  env (`storage/auth_store.py`); this object mirrors them in memory so checks cost no LMDB
  transaction, and applies write both in the batch's transaction, in log order, so a check
  made later in the same batch sees an earlier change. `load()` rebuilds the mirror (start,
  snapshot install).
* Identity: the API layer puts the request's token into `CURRENT_TOKEN` (as etcd puts it in
  the request context); `info()` turns it into an `AuthInfo` or fails with etcd's "invalid
  auth token". A request without a token is the empty identity, which auth-enabled checks
  answer with "user name is empty".
* Checks are etcd's: `check_op` (isOpPermitted: the identity's revision must not be older
  than the store's, then root or the merged role permissions decide), `check_admin`
  (IsAdminPermitted: the user must hold the root role), and the per-request compositions
  (txn compares and every op, nested; put with prev_kv and lease; delete with prev_kv).
  Writes are checked where etcd checks them: when the entry is applied, against the
  identity and auth revision the proposing member recorded in it.
* Every change that etcd's store commits with a new revision bumps `revision` by one
  (enable and no-op grants do not; disable does).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from etcdpy import logutil
from etcdpy._pb.authpb import auth_pb2 as authpb
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.internalpb import internal_pb2 as internalpb
from etcdpy.server import errors
from etcdpy.server.auth_perms import PermType, UserPerms, merge_roles
from etcdpy.server.auth_tokens import TokenProvider
from etcdpy.storage.auth_store import AuthRecords
from etcdpy.storage.env import LmdbEnv

log = logutil.get("auth")

ROOT_USER = "root"
ROOT_ROLE = "root"
# bcrypt looks at the first 72 bytes of a password only (Go's library then ignored the rest
# silently; Python's refuses longer input, so the cut is made here, the same for both).
BCRYPT_MAX_BYTES = 72
MIN_BCRYPT_COST, MAX_BCRYPT_COST, DEFAULT_BCRYPT_COST = 4, 31, 10

# The token of the request being served (None: the request carried none). Set by the API
# layer for each RPC; contextvars follow the RPC's task and the tasks it starts.
CURRENT_TOKEN: ContextVar[str | None] = ContextVar("etcdpy_auth_token", default=None)

# Replicated requests that change the auth store: only a root user may send them once auth
# is enabled (etcd's needAdminPermission).
ADMIN_REQUESTS = frozenset({
    "auth_enable", "auth_disable", "auth_user_add", "auth_user_delete",
    "auth_user_change_password", "auth_user_grant_role", "auth_user_revoke_role",
    "auth_role_add", "auth_role_delete", "auth_role_grant_permission",
    "auth_role_revoke_permission",
})
AUTH_REQUESTS = ADMIN_REQUESTS | {"authenticate"}


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who sends a request, and the auth revision it was judged at. The empty identity
    (no token) is ("", 0), as etcd's zero AuthInfo."""

    username: str = ""
    revision: int = 0

    def __post_init__(self) -> None:
        assert bool(self.username) == (self.revision > 0), self


NOBODY = AuthInfo()


def _pw(password: str) -> bytes:
    return password.encode()[:BCRYPT_MAX_BYTES]


def hash_password(password: str, cost: int) -> str:
    """bcrypt at `cost` (slow on purpose: call it off the event loop)."""
    import bcrypt  # only a member that manages passwords needs the library loaded

    return bcrypt.hashpw(_pw(password), bcrypt.gensalt(cost)).decode()


def password_matches(password: str, hashed: bytes) -> bool:
    """bcrypt comparison (slow on purpose: call it off the event loop)."""
    import bcrypt

    try:
        return bcrypt.checkpw(_pw(password), hashed)
    except ValueError:  # not a bcrypt hash
        return False


class AuthStore:
    def __init__(self, env: LmdbEnv, tokens: TokenProvider,
                 bcrypt_cost: int = DEFAULT_BCRYPT_COST) -> None:
        self._env = env
        self.tokens = tokens
        if not MIN_BCRYPT_COST <= bcrypt_cost <= MAX_BCRYPT_COST:
            # etcd falls back to the default rather than refusing to start.
            log.warning("use default bcrypt cost instead of the invalid given cost",
                        **{"min-cost": MIN_BCRYPT_COST, "max-cost": MAX_BCRYPT_COST,
                           "default-cost": DEFAULT_BCRYPT_COST, "given-cost": bcrypt_cost})
            bcrypt_cost = DEFAULT_BCRYPT_COST
        self.bcrypt_cost = bcrypt_cost
        self.enabled = False
        self.revision = 0
        self._users: dict[str, authpb.User] = {}
        self._roles: dict[str, authpb.Role] = {}
        self._perms: dict[str, UserPerms] = {}
        self.load()

    def load(self) -> None:
        """Mirror the records in the state env (after start or a snapshot install)."""
        with self._env.begin() as txn:
            records = AuthRecords(txn, self._env.dbs)
            self.enabled = records.enabled()
            self.revision = records.revision()
            self._users = {u.name.decode(): u for u in records.users()}
            self._roles = {r.name.decode(): r for r in records.roles()}
        self._perms.clear()

    # --- identity ---

    def info(self, token: str | None = None) -> AuthInfo:
        """etcd's AuthInfoFromCtx: the identity of the current request's token."""
        if token is None:
            token = CURRENT_TOKEN.get()
        if token is None:
            return NOBODY
        found = self.tokens.lookup(token, max(self.revision, 1))
        if found is None or not found[0] or found[1] <= 0:
            log.warning("invalid auth token", token=token)
            raise errors.InvalidAuthToken()
        return AuthInfo(*found)

    # --- checks ---

    def _user_perms(self, name: str) -> UserPerms:
        perms = self._perms.get(name)
        if perms is None:
            user = self._users[name]
            perms = merge_roles(self._roles[r] for r in user.roles if r in self._roles)
            self._perms[name] = perms
        return perms

    def has_root(self, name: str) -> bool:
        user = self._users.get(name)
        return user is not None and ROOT_ROLE in user.roles

    def check_op(self, who: AuthInfo, perm: PermType, key: bytes, range_end: bytes = b"") -> None:
        """etcd's isOpPermitted."""
        if not self.enabled:
            return
        if who.revision == 0:
            raise errors.UserEmpty()
        if who.revision < self.revision:
            raise errors.AuthOldRevision()
        if who.username not in self._users:
            raise errors.PermissionDenied()
        if self.has_root(who.username):
            return
        if not self._user_perms(who.username).allows(perm, key, range_end):
            raise errors.PermissionDenied()

    def check_admin(self, who: AuthInfo) -> None:
        """etcd's IsAdminPermitted."""
        if not self.enabled:
            return
        if not who.username:
            raise errors.UserEmpty()
        if who.username not in self._users:
            raise errors.UserNotFound()
        if not self.has_root(who.username):
            raise errors.PermissionDenied()

    def check_maintenance_admin(self, token: str | None) -> None:
        """The admin check of etcd 3.5's maintenance server (Defragment, Snapshot, Hash,
        HashKV, Downgrade): the same rule, but its errors reach the client unmapped."""
        raw: dict[type[errors.EtcdError], type[errors.EtcdError]] = {
            errors.InvalidAuthToken: errors.RawInvalidAuthToken,
            errors.UserEmpty: errors.RawUserEmpty,
            errors.UserNotFound: errors.RawUserNotFound,
            errors.PermissionDenied: errors.RawPermissionDenied,
        }
        try:
            self.check_admin(self.info(token))
        except errors.EtcdError as error:
            raise raw.get(type(error), type(error))() from None

    def check_range(self, who: AuthInfo, r: pb.RangeRequest) -> None:
        self.check_op(who, PermType.READ, r.key, r.range_end)

    def check_put(self, who: AuthInfo, r: pb.PutRequest,
                  lease_keys: Callable[[int], list[bytes]]) -> None:
        self.check_op(who, PermType.WRITE, r.key)
        if r.lease:
            # A key already on the lease that this user may not write means the user could
            # not revoke the lease either; attaching more keys to it is refused as well.
            for key in lease_keys(r.lease):
                self.check_op(who, PermType.WRITE, key)
        if r.prev_kv:
            self.check_op(who, PermType.READ, r.key)

    def check_delete(self, who: AuthInfo, r: pb.DeleteRangeRequest) -> None:
        self.check_op(who, PermType.WRITE, r.key, r.range_end)
        if r.prev_kv:
            self.check_op(who, PermType.READ, r.key, r.range_end)

    def check_txn(self, who: AuthInfo, r: pb.TxnRequest,
                  lease_keys: Callable[[int], list[bytes]] | None = None) -> None:
        """Every compare is a read; every op of both branches is checked, nested txns too."""
        if not self.enabled:
            return
        for cmp in r.compare:
            self.check_op(who, PermType.READ, cmp.key, cmp.range_end)
        for op in (*r.success, *r.failure):
            which = op.WhichOneof("request")
            if which == "request_range":
                self.check_range(who, op.request_range)
            elif which == "request_put":
                self.check_put(who, op.request_put, lease_keys or _no_keys)
            elif which == "request_delete_range":
                self.check_delete(who, op.request_delete_range)
            elif which == "request_txn":
                self.check_txn(who, op.request_txn, lease_keys)

    def check_lease_keys(self, who: AuthInfo, keys: list[bytes]) -> None:
        """Revoking a lease deletes its keys: the user must be allowed to write each."""
        for key in keys:
            self.check_op(who, PermType.WRITE, key)

    def check_request(self, request: internalpb.InternalRequest,
                      lease_keys: Callable[[int], list[bytes]]) -> None:
        """The apply-time check of a replicated KV or lease request (etcd's authApplierV3)."""
        if not self.enabled:
            return
        who = AuthInfo(request.username, request.auth_revision) if request.username \
            else NOBODY
        which = request.WhichOneof("request")
        if which == "put":
            self.check_put(who, request.put, lease_keys)
        elif which == "delete_range":
            self.check_delete(who, request.delete_range)
        elif which == "txn":
            self.check_txn(who, request.txn, lease_keys)
        elif which == "lease_revoke":
            self.check_lease_keys(who, lease_keys(request.lease_revoke.ID))

    # --- reads (served locally after a linearizable barrier) ---

    def status(self, who: AuthInfo) -> pb.AuthStatusResponse:
        self.check_admin(who)
        return pb.AuthStatusResponse(enabled=self.enabled, authRevision=self.revision)

    def user_get(self, who: AuthInfo, name: str) -> pb.AuthUserGetResponse:
        # A user may look at itself without the root role.
        if name != who.username:
            self.check_admin(who)
        user = self._users.get(name)
        if user is None:
            raise errors.UserNotFound()
        return pb.AuthUserGetResponse(roles=list(user.roles))

    def user_list(self, who: AuthInfo) -> pb.AuthUserListResponse:
        self.check_admin(who)
        return pb.AuthUserListResponse(users=sorted(self._users))

    def role_get(self, who: AuthInfo, name: str) -> pb.AuthRoleGetResponse:
        # A user may look at the roles it holds without the root role.
        user = self._users.get(who.username)
        if user is None or name not in user.roles:
            self.check_admin(who)
        role = self._roles.get(name)
        if role is None:
            raise errors.RoleNotFound()
        return pb.AuthRoleGetResponse(perm=list(role.keyPermission))

    def role_list(self, who: AuthInfo) -> pb.AuthRoleListResponse:
        self.check_admin(who)
        return pb.AuthRoleListResponse(roles=sorted(self._roles))

    def login_hash(self, name: str) -> tuple[bytes, int]:
        """What Authenticate compares the password with, and the revision it was read at
        (etcd's CheckPassword before the bcrypt comparison)."""
        if not self.enabled:
            raise errors.AuthNotEnabled()
        user = self._users.get(name)
        if user is None:
            raise errors.AuthFailed()
        if user.options.no_password:
            raise errors.NoPasswordUser()
        return bytes(user.password), self.revision

    # --- apply (deterministic: the same entries give the same state on every member) ---

    def apply(self, records: AuthRecords, request: internalpb.InternalRequest,
              index: int) -> Any:
        which = request.WhichOneof("request")
        assert which in AUTH_REQUESTS, which
        if which == "authenticate":
            return self._authenticate(request.authenticate, index)
        self.check_admin(AuthInfo(request.username, request.auth_revision)
                         if request.username else NOBODY)
        handler: Callable[[AuthRecords, Any], Any] = getattr(self, "_" + which)
        return handler(records, getattr(request, which))

    def _commit_revision(self, records: AuthRecords) -> None:
        self.revision += 1
        records.set_revision(self.revision)
        self._perms.clear()

    def _put_user(self, records: AuthRecords, user: authpb.User) -> None:
        records.put_user(user)
        self._users[user.name.decode()] = user

    def _put_role(self, records: AuthRecords, role: authpb.Role) -> None:
        records.put_role(role)
        self._roles[role.name.decode()] = role

    def _authenticate(self, r: internalpb.InternalAuthenticateRequest, index: int
                      ) -> pb.AuthenticateResponse:
        if not self.enabled:
            raise errors.AuthNotEnabled()
        user = self._users.get(r.name)
        if user is None or user.options.no_password:
            raise errors.AuthFailed()
        # Every member records a simple token, so the client may use it on any of them.
        try:
            token = self.tokens.mint(r.simple_token, index, r.name, self.revision)
        except RuntimeError as error:  # a member that may only verify JWTs
            raise errors.EtcdError(str(error)) from None
        return pb.AuthenticateResponse(token=token)

    def _auth_enable(self, records: AuthRecords, r: pb.AuthEnableRequest) -> Any:
        if self.enabled:
            return pb.AuthEnableResponse()
        if ROOT_USER not in self._users:
            raise errors.RootUserNotExist()
        if not self.has_root(ROOT_USER):
            raise errors.RootRoleNotExist()
        records.set_enabled(True)
        self.enabled = True
        self._perms.clear()
        log.info("enabled authentication")
        return pb.AuthEnableResponse()

    def _auth_disable(self, records: AuthRecords, r: pb.AuthDisableRequest) -> Any:
        if not self.enabled:
            return pb.AuthDisableResponse()
        records.set_enabled(False)
        self.enabled = False
        self._commit_revision(records)
        self.tokens.clear()
        log.info("disabled authentication")
        return pb.AuthDisableResponse()

    def _auth_user_add(self, records: AuthRecords, r: pb.AuthUserAddRequest) -> Any:
        if not r.name:
            raise errors.UserEmpty()
        if r.name in self._users:
            raise errors.UserAlreadyExist()
        no_password = r.HasField("options") and r.options.no_password
        user = authpb.User(name=r.name.encode())
        user.options.no_password = no_password
        if not no_password:
            # The receiving member hashed it before proposing; an entry without a hash
            # (never written by etcdpy) is hashed here, as etcd does for old entries.
            user.password = (r.hashedPassword or hash_password(r.password, self.bcrypt_cost)
                             ).encode()
        self._put_user(records, user)
        self._commit_revision(records)
        log.info("added a user", **{"user-name": r.name})
        return pb.AuthUserAddResponse()

    def _auth_user_delete(self, records: AuthRecords, r: pb.AuthUserDeleteRequest) -> Any:
        if self.enabled and r.name == ROOT_USER:
            raise errors.InvalidAuthMgmt()
        if r.name not in self._users:
            raise errors.UserNotFound()
        records.delete_user(r.name)
        del self._users[r.name]
        self._commit_revision(records)
        self.tokens.invalidate_user(r.name)
        log.info("deleted a user", **{"user-name": r.name})
        return pb.AuthUserDeleteResponse()

    def _auth_user_change_password(self, records: AuthRecords,
                                   r: pb.AuthUserChangePasswordRequest) -> Any:
        old = self._users.get(r.name)
        if old is None:
            raise errors.UserNotFound()
        user = authpb.User()
        user.CopyFrom(old)
        user.password = (r.hashedPassword or hash_password(r.password, self.bcrypt_cost)
                         ).encode()
        self._put_user(records, user)
        self._commit_revision(records)
        self.tokens.invalidate_user(r.name)
        log.info("changed a password of a user", **{"user-name": r.name})
        return pb.AuthUserChangePasswordResponse()

    def _auth_user_grant_role(self, records: AuthRecords, r: pb.AuthUserGrantRoleRequest
                              ) -> Any:
        old = self._users.get(r.user)
        if old is None:
            raise errors.UserNotFound()
        if r.role != ROOT_ROLE and r.role not in self._roles:
            raise errors.RoleNotFound()
        if r.role in old.roles:
            return pb.AuthUserGrantRoleResponse()  # etcd ignores it: no new revision
        user = authpb.User()
        user.CopyFrom(old)
        roles = list(user.roles)
        bisect.insort(roles, r.role)
        del user.roles[:]
        user.roles.extend(roles)
        self._put_user(records, user)
        self._commit_revision(records)
        return pb.AuthUserGrantRoleResponse()

    def _auth_user_revoke_role(self, records: AuthRecords, r: pb.AuthUserRevokeRoleRequest
                               ) -> Any:
        if self.enabled and r.name == ROOT_USER and r.role == ROOT_ROLE:
            raise errors.InvalidAuthMgmt()
        old = self._users.get(r.name)
        if old is None:
            raise errors.UserNotFound()
        if r.role not in old.roles:
            raise errors.RoleNotGranted()
        user = authpb.User()
        user.CopyFrom(old)
        roles = [role for role in user.roles if role != r.role]
        del user.roles[:]
        user.roles.extend(roles)
        self._put_user(records, user)
        self._commit_revision(records)
        return pb.AuthUserRevokeRoleResponse()

    def _auth_role_add(self, records: AuthRecords, r: pb.AuthRoleAddRequest) -> Any:
        if not r.name:
            raise errors.RoleEmpty()
        if r.name in self._roles:
            raise errors.RoleAlreadyExist()
        self._put_role(records, authpb.Role(name=r.name.encode()))
        self._commit_revision(records)
        log.info("created a role", **{"role-name": r.name})
        return pb.AuthRoleAddResponse()

    def _auth_role_delete(self, records: AuthRecords, r: pb.AuthRoleDeleteRequest) -> Any:
        if self.enabled and r.role == ROOT_ROLE:
            raise errors.InvalidAuthMgmt()
        if r.role not in self._roles:
            raise errors.RoleNotFound()
        records.delete_role(r.role)
        del self._roles[r.role]
        # The role disappears from every user that held it (in name order, deterministic).
        for name in sorted(self._users):
            old = self._users[name]
            if r.role not in old.roles:
                continue
            user = authpb.User()
            user.CopyFrom(old)
            roles = [role for role in user.roles if role != r.role]
            del user.roles[:]
            user.roles.extend(roles)
            self._put_user(records, user)
        self._commit_revision(records)
        log.info("deleted a role", **{"role-name": r.role})
        return pb.AuthRoleDeleteResponse()

    def _auth_role_grant_permission(self, records: AuthRecords,
                                    r: pb.AuthRoleGrantPermissionRequest) -> Any:
        if not r.HasField("perm"):
            raise errors.PermissionNotGiven()
        old = self._roles.get(r.name)
        if old is None:
            raise errors.RoleNotFound()
        role = authpb.Role()
        role.CopyFrom(old)
        perms = [_copy(p) for p in role.keyPermission]
        keys = [bytes(p.key) for p in perms]
        # Like etcd: the first permission whose key is >= the new key is updated in place
        # when it names the same range; otherwise the new one is added, kept in key order.
        i = bisect.bisect_left(keys, r.perm.key)
        if i < len(perms) and perms[i].key == r.perm.key and \
                perms[i].range_end == r.perm.range_end:
            role.keyPermission[i].permType = r.perm.permType
        else:
            perms.append(authpb.Permission(permType=r.perm.permType, key=r.perm.key,
                                           range_end=r.perm.range_end))
            perms.sort(key=lambda p: bytes(p.key))
            del role.keyPermission[:]
            role.keyPermission.extend(perms)
        self._put_role(records, role)
        self._commit_revision(records)
        log.info("granted/updated a permission to a user", **{"role-name": r.name})
        return pb.AuthRoleGrantPermissionResponse()

    def _auth_role_revoke_permission(self, records: AuthRecords,
                                     r: pb.AuthRoleRevokePermissionRequest) -> Any:
        old = self._roles.get(r.role)
        if old is None:
            raise errors.RoleNotFound()
        role = authpb.Role()
        role.CopyFrom(old)
        kept = [_copy(p) for p in role.keyPermission
                if not (p.key == r.key and p.range_end == r.range_end)]
        if len(kept) == len(role.keyPermission):
            raise errors.PermissionNotGranted()
        del role.keyPermission[:]
        role.keyPermission.extend(kept)
        self._put_role(records, role)
        self._commit_revision(records)
        log.info("revoked a permission on range", **{"role-name": r.role})
        return pb.AuthRoleRevokePermissionResponse()


def _copy(perm: authpb.Permission) -> authpb.Permission:
    out = authpb.Permission()
    out.CopyFrom(perm)
    return out


def _no_keys(lease_id: int) -> list[bytes]:
    return []

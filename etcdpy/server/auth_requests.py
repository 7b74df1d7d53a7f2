"""What the member does for each Auth service RPC before and around Raft (etcd's v3_server).

* Passwords are hashed here, on the member that received the request, before proposing
  (bcrypt is slow on purpose; doing it once, off the event loop, keeps apply cheap and
  deterministic, and the clear password never reaches the log).
* Authenticate checks the password here too, then proposes only the user name and a fresh
  token prefix; the apply mints the token on every member. If the auth store changed between
  the check and the apply, the check is redone (etcd loops the same way; bounded here).
* Reads (status, user/role get and list) are served from this member's state after a
  linearizable barrier, with etcd's permission rules.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.internalpb import internal_pb2 as internalpb
from etcdpy.server import errors
from etcdpy.server.auth import AuthStore, hash_password, password_matches

# Authenticate retries when the auth store moved on while the password was being checked;
# a store changing on every attempt this many times in a row fails the request instead.
MAX_AUTHENTICATE_ATTEMPTS = 8


class Member(Protocol):
    auth: AuthStore

    async def propose(self, request: internalpb.InternalRequest) -> Any: ...

    async def linearizable_barrier(self) -> None: ...


class AuthRequests:
    def __init__(self, member: Member) -> None:
        self._member = member

    @property
    def _auth(self) -> AuthStore:
        return self._member.auth

    async def authenticate(self, r: pb.AuthenticateRequest) -> pb.AuthenticateResponse:
        await self._member.linearizable_barrier()
        for _ in range(MAX_AUTHENTICATE_ATTEMPTS):
            hashed, checked_at = self._auth.login_hash(r.name)
            if not await asyncio.to_thread(password_matches, r.password, hashed):
                raise errors.AuthFailed()
            request = internalpb.InternalRequest(
                authenticate=internalpb.InternalAuthenticateRequest(
                    name=r.name, simple_token=self._auth.tokens.new_prefix()))
            resp: pb.AuthenticateResponse = await self._member.propose(request)
            if checked_at == self._auth.revision:
                return resp
        raise errors.AuthOldRevision()

    async def enable(self) -> pb.AuthEnableResponse:
        return await self._propose(auth_enable=pb.AuthEnableRequest())

    async def disable(self) -> pb.AuthDisableResponse:
        return await self._propose(auth_disable=pb.AuthDisableRequest())

    async def status(self) -> pb.AuthStatusResponse:
        await self._member.linearizable_barrier()
        return self._auth.status(self._auth.info())

    async def user_add(self, r: pb.AuthUserAddRequest) -> pb.AuthUserAddResponse:
        request = pb.AuthUserAddRequest()
        request.CopyFrom(r)
        if not (r.HasField("options") and r.options.no_password):
            request.hashedPassword = await self._hash(r.password)
        request.password = ""
        return await self._propose(auth_user_add=request)

    async def user_change_password(self, r: pb.AuthUserChangePasswordRequest
                                   ) -> pb.AuthUserChangePasswordResponse:
        request = pb.AuthUserChangePasswordRequest(
            name=r.name, hashedPassword=await self._hash(r.password))
        return await self._propose(auth_user_change_password=request)

    async def user_get(self, r: pb.AuthUserGetRequest) -> pb.AuthUserGetResponse:
        await self._member.linearizable_barrier()
        return self._auth.user_get(self._auth.info(), r.name)

    async def user_list(self) -> pb.AuthUserListResponse:
        await self._member.linearizable_barrier()
        return self._auth.user_list(self._auth.info())

    async def user_delete(self, r: pb.AuthUserDeleteRequest) -> pb.AuthUserDeleteResponse:
        return await self._propose(auth_user_delete=r)

    async def user_grant_role(self, r: pb.AuthUserGrantRoleRequest
                              ) -> pb.AuthUserGrantRoleResponse:
        return await self._propose(auth_user_grant_role=r)

    async def user_revoke_role(self, r: pb.AuthUserRevokeRoleRequest
                               ) -> pb.AuthUserRevokeRoleResponse:
        return await self._propose(auth_user_revoke_role=r)

    async def role_add(self, r: pb.AuthRoleAddRequest) -> pb.AuthRoleAddResponse:
        return await self._propose(auth_role_add=r)

    async def role_get(self, r: pb.AuthRoleGetRequest) -> pb.AuthRoleGetResponse:
        await self._member.linearizable_barrier()
        return self._auth.role_get(self._auth.info(), r.role)

    async def role_list(self) -> pb.AuthRoleListResponse:
        await self._member.linearizable_barrier()
        return self._auth.role_list(self._auth.info())

    async def role_delete(self, r: pb.AuthRoleDeleteRequest) -> pb.AuthRoleDeleteResponse:
        return await self._propose(auth_role_delete=r)

    async def role_grant_permission(self, r: pb.AuthRoleGrantPermissionRequest
                                    ) -> pb.AuthRoleGrantPermissionResponse:
        return await self._propose(auth_role_grant_permission=r)

    async def role_revoke_permission(self, r: pb.AuthRoleRevokePermissionRequest
                                     ) -> pb.AuthRoleRevokePermissionResponse:
        return await self._propose(auth_role_revoke_permission=r)

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(hash_password, password, self._auth.bcrypt_cost)

    async def _propose(self, **request: Any) -> Any:
        return await self._member.propose(internalpb.InternalRequest(**request))

"""etcdserverpb.Auth: authentication, users, roles and permissions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy.server.api.errors import grpc_errors
from etcdpy.server.auth_requests import AuthRequests
from etcdpy.server.etcdserver import EtcdServer


class AuthServicer(pb_grpc.AuthServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._auth = AuthRequests(server)

    async def _serve(self, context: grpc.aio.ServicerContext,
                     call: Callable[[], Awaitable[Any]]) -> Any:
        async with grpc_errors(context):
            resp = await call()
            self._server.fill_header(resp.header)
            return resp

    async def AuthEnable(self, request: pb.AuthEnableRequest, context: grpc.aio.ServicerContext) -> pb.AuthEnableResponse:  # noqa: N802, E501
        return await self._serve(context, self._auth.enable)

    async def AuthDisable(self, request: pb.AuthDisableRequest, context: grpc.aio.ServicerContext) -> pb.AuthDisableResponse:  # noqa: N802, E501
        return await self._serve(context, self._auth.disable)

    async def AuthStatus(self, request: pb.AuthStatusRequest, context: grpc.aio.ServicerContext) -> pb.AuthStatusResponse:  # noqa: N802, E501
        return await self._serve(context, self._auth.status)

    async def Authenticate(self, request: pb.AuthenticateRequest, context: grpc.aio.ServicerContext) -> pb.AuthenticateResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.authenticate(request))

    async def UserAdd(self, request: pb.AuthUserAddRequest, context: grpc.aio.ServicerContext) -> pb.AuthUserAddResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.user_add(request))

    async def UserGet(self, request: pb.AuthUserGetRequest, context: grpc.aio.ServicerContext) -> pb.AuthUserGetResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.user_get(request))

    async def UserList(self, request: pb.AuthUserListRequest, context: grpc.aio.ServicerContext) -> pb.AuthUserListResponse:  # noqa: N802, E501
        return await self._serve(context, self._auth.user_list)

    async def UserDelete(self, request: pb.AuthUserDeleteRequest, context: grpc.aio.ServicerContext) -> pb.AuthUserDeleteResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.user_delete(request))

    async def UserChangePassword(self, request: pb.AuthUserChangePasswordRequest, context: grpc.aio.ServicerContext) -> pb.AuthUserChangePasswordResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.user_change_password(request))

    async def UserGrantRole(self, request: pb.AuthUserGrantRoleRequest, context: grpc.aio.ServicerContext) -> pb.AuthUserGrantRoleResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.user_grant_role(request))

    async def UserRevokeRole(self, request: pb.AuthUserRevokeRoleRequest, context: grpc.aio.ServicerContext) -> pb.AuthUserRevokeRoleResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.user_revoke_role(request))

    async def RoleAdd(self, request: pb.AuthRoleAddRequest, context: grpc.aio.ServicerContext) -> pb.AuthRoleAddResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.role_add(request))

    async def RoleGet(self, request: pb.AuthRoleGetRequest, context: grpc.aio.ServicerContext) -> pb.AuthRoleGetResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.role_get(request))

    async def RoleList(self, request: pb.AuthRoleListRequest, context: grpc.aio.ServicerContext) -> pb.AuthRoleListResponse:  # noqa: N802, E501
        return await self._serve(context, self._auth.role_list)

    async def RoleDelete(self, request: pb.AuthRoleDeleteRequest, context: grpc.aio.ServicerContext) -> pb.AuthRoleDeleteResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.role_delete(request))

    async def RoleGrantPermission(self, request: pb.AuthRoleGrantPermissionRequest, context: grpc.aio.ServicerContext) -> pb.AuthRoleGrantPermissionResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.role_grant_permission(request))

    async def RoleRevokePermission(self, request: pb.AuthRoleRevokePermissionRequest, context: grpc.aio.ServicerContext) -> pb.AuthRoleRevokePermissionResponse:  # noqa: N802, E501
        return await self._serve(context, lambda: self._auth.role_revoke_permission(request))

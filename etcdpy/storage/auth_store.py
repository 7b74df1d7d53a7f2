"""Users, roles and the auth switches, persisted in the state env (etcd's auth buckets).

Records are etcd's own protobufs (``authpb.User`` / ``authpb.Role``) under their names, in
databases named like etcd's bbolt buckets (``auth``, ``authUsers``, ``authRoles``), and the
``auth`` database holds the enabled flag and the auth revision under etcd's key names.
Everything is written through :class:`AuthRecords` on the batch's LMDB transaction, so an
auth change is committed together with the applied index of its entry, is replayed exactly
after a crash, and travels in state snapshots like every other applied state.

This module knows bytes and records only; the rules (who may do what, which error) live
in ``server/auth.py``.
"""

from __future__ import annotations

import struct

import lmdb

from etcdpy._pb.authpb import auth_pb2 as authpb

from . import schema

_U64 = struct.Struct(">Q")
_ENABLED = b"\x01"
_DISABLED = b"\x00"
# A fresh store starts at auth revision 1, as etcd's does (`auth status` says 1).
INITIAL_REVISION = 1


class AuthRecords:
    """Auth state inside one LMDB transaction (read or write)."""

    def __init__(self, txn: lmdb.Transaction, dbs: dict[bytes, lmdb._Database]) -> None:
        self._txn = txn
        self._auth = dbs[schema.DB_AUTH]
        self._users = dbs[schema.DB_AUTH_USERS]
        self._roles = dbs[schema.DB_AUTH_ROLES]

    # --- switches ---

    def enabled(self) -> bool:
        return self._txn.get(schema.AUTH_ENABLED_KEY, db=self._auth) == _ENABLED

    def set_enabled(self, enabled: bool) -> None:
        self._txn.put(schema.AUTH_ENABLED_KEY, _ENABLED if enabled else _DISABLED, db=self._auth)

    def revision(self) -> int:
        raw = self._txn.get(schema.AUTH_REVISION_KEY, db=self._auth)
        return INITIAL_REVISION if raw is None else int(_U64.unpack(raw)[0])

    def set_revision(self, revision: int) -> None:
        # invariant: the auth revision only grows (tokens and requests are judged by it)
        assert revision >= self.revision(), (revision, self.revision())
        self._txn.put(schema.AUTH_REVISION_KEY, _U64.pack(revision), db=self._auth)

    # --- users ---

    def user(self, name: str) -> authpb.User | None:
        raw = self._txn.get(name.encode(), db=self._users)
        return None if raw is None else authpb.User.FromString(bytes(raw))

    def put_user(self, user: authpb.User) -> None:
        assert user.name, "a user record needs a name"
        self._txn.put(bytes(user.name), user.SerializeToString(deterministic=True),
                      db=self._users)

    def delete_user(self, name: str) -> bool:
        return bool(self._txn.delete(name.encode(), db=self._users))

    def users(self) -> list[authpb.User]:
        """Every user, in name (byte) order."""
        return [authpb.User.FromString(bytes(v)) for _k, v in self._txn.cursor(self._users)]

    # --- roles ---

    def role(self, name: str) -> authpb.Role | None:
        raw = self._txn.get(name.encode(), db=self._roles)
        return None if raw is None else authpb.Role.FromString(bytes(raw))

    def put_role(self, role: authpb.Role) -> None:
        assert role.name, "a role record needs a name"
        self._txn.put(bytes(role.name), role.SerializeToString(deterministic=True),
                      db=self._roles)

    def delete_role(self, name: str) -> bool:
        return bool(self._txn.delete(name.encode(), db=self._roles))

    def roles(self) -> list[authpb.Role]:
        """Every role, in name (byte) order."""
        return [authpb.Role.FromString(bytes(v)) for _k, v in self._txn.cursor(self._roles)]

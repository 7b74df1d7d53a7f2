"""The member's state env, opened read-only in a worker, and the Range it can answer from it.

LMDB lets any number of processes read while one writes; a read transaction sees the last
commit before it began. The member commits each apply batch (its state *and* its applied
index) in one transaction before counting the entries as applied, so a transaction whose
stored applied index is at least a ReadIndex answer's sees every write that answer covers.

Two ways the worker's view can fall behind, both checked on every read:
* the member replaced data.mdb (defragmentation, a snapshot from the leader): our handle
  still maps the old file, so the inode is compared and the env reopened when it changed;
* the member grew the map: `LmdbEnv.begin` adopts the new size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server import txn
from etcdpy.server.mvcc_view import ReadTxnView
from etcdpy.storage import schema
from etcdpy.storage.auth_store import AuthRecords
from etcdpy.storage.env import LmdbEnv
from etcdpy.storage.mvcc.kvstore import ReadView


@dataclass(frozen=True, slots=True)
class LocalRead:
    """A Range answered from one read transaction, header still to be completed."""

    response: pb.RangeResponse
    raft_term: int  # the term of the last applied entry in that transaction


class _OneTxn:
    """The env as ReadView sees it (`begin`, `dbs`), remembering the transaction it began,
    so the auth flag is read in the very transaction the range reads."""

    def __init__(self, env: LmdbEnv) -> None:
        self.dbs = env.dbs
        self._env = env
        self.txn: lmdb.Transaction | None = None

    def begin(self, write: bool = False) -> lmdb.Transaction:
        assert not write
        self.txn = self._env.begin()
        return self.txn


class StateReader:
    def __init__(self, state_dir: Path, map_size: int) -> None:
        self._dir = state_dir
        self._map_size = map_size
        self._env = self._open()

    def _open(self) -> LmdbEnv:
        self._inode = os.stat(self._dir / "data.mdb").st_ino
        env = LmdbEnv(self._dir, schema.STATE_DBS, self._map_size, readonly=True)
        # A worker killed inside a read transaction leaves its reader slot behind, pinning
        # old pages so the file grows; the member clears such slots only when it opens the
        # env, so the worker that replaces the dead one clears them.
        env.env.reader_check()
        return env

    def _reopen(self) -> None:
        self._env.close()
        self._env = self._open()

    def close(self) -> None:
        self._env.close()

    def range(self, request: pb.RangeRequest, min_index: int) -> LocalRead | None:
        """The member's answer to `request` from a transaction holding at least `min_index`,
        or None when this worker cannot answer as the member would (auth is on, or the view
        lags): the caller passes the request to the member then. Raises server.errors."""
        if os.stat(self._dir / "data.mdb").st_ino != self._inode:
            self._reopen()
        read = self._read_once(request, min_index)
        if read is _LAGGING:
            self._reopen()  # a file swapped after the inode check: one more try
            read = self._read_once(request, min_index)
        return None if read is _LAGGING else read  # type: ignore[return-value]

    def _read_once(self, request: pb.RangeRequest, min_index: int) -> LocalRead | None | object:
        holder = _OneTxn(self._env)
        view = ReadView(holder)  # type: ignore[arg-type]  # duck-typed env
        try:
            if view.meta.consistent_index < min_index:
                return _LAGGING
            assert holder.txn is not None
            if AuthRecords(holder.txn, self._env.dbs).enabled():
                return None  # the member checks permissions and tokens: let it
            return LocalRead(txn.range_(ReadTxnView(view), request), view.meta.term)
        finally:
            view.close()


_LAGGING = object()  # the transaction holds less than the read needs


def complete_header(header: Any, cluster_id: int, member_id: int, raft_term: int) -> None:
    """What EtcdServer.fill_header adds to a Range's header (the revision is already set)."""
    header.cluster_id = cluster_id
    header.member_id = member_id
    header.raft_term = raft_term

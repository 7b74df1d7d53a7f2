"""Applying committed Raft entries to the state: one LMDB write transaction per batch.

Each normal entry carries an `InternalRequest`; each write request becomes one storage
transaction (one revision if it changed anything). The applied index is committed together
with the state it produced (storage does that), so after a crash the entries at or below the
stored index are skipped and replay is exact. A request that fails (lease not found, a
compacted revision...) changes nothing and its error goes back to the waiting client; it never
stops the batch.

After the batch commits: watchers get the events, waiting requests get their results. Results
are only delivered after the commit, so a client never sees a write that could be lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from etcdpy import logutil
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.internalpb import internal_pb2 as internalpb
from etcdpy.raft import ConfChange, Entry, EntryType
from etcdpy.server import errors, txn
from etcdpy.server.auth import AUTH_REQUESTS, AuthStore
from etcdpy.server.membership import MembershipView
from etcdpy.server.mvcc_view import WriteTxnView
from etcdpy.storage.auth_store import AuthRecords
from etcdpy.storage.errors import (
    CompactedError,
    FutureRevisionError,
    LeaseExistsError,
    LeaseNotFoundError,
)
from etcdpy.storage.lease_store import attached_keys
from etcdpy.storage.mvcc.kv_codec import Event
from etcdpy.storage.mvcc.kvstore import KVStore, WriteBatch

log = logutil.get("apply")

# etcd refuses TTLs above this (lease.MaxLeaseTTL).
MAX_LEASE_TTL_S = 9_000_000_000


class Lessor(Protocol):
    def grant(self, lease_id: int, ttl: int) -> Any: ...

    def revoke(self, lease_id: int) -> Any: ...

    def checkpoint(self, lease_id: int, remaining_ttl: int) -> None: ...

    def lookup(self, lease_id: int) -> Any | None: ...


class ConfChangeSink(Protocol):
    def apply_conf_change(self, change: ConfChange) -> Any:
        """Tell the Raft core (between ready() and advance(), as etcd does)."""
        ...


@dataclass
class ApplyResult:
    """What one batch produced, for the caller to hand out after the commit."""

    revision: int
    # the store's events; the watch hub makes messages of those a watcher wants
    events: list[Event] = field(default_factory=list)
    results: list[tuple[int, Any]] = field(default_factory=list)  # (request id, response|error)
    compacted_to: int = 0


class Applier:
    def __init__(
        self,
        store: KVStore,
        lessor: Lessor,
        conf_changes: ConfChangeSink,
        membership: MembershipView,
        min_lease_ttl_s: int,
        auth: AuthStore | None = None,
    ) -> None:
        self._store = store
        self._lessor = lessor
        self._conf_changes = conf_changes
        self._membership = membership
        self._min_lease_ttl_s = min_lease_ttl_s
        self._auth = auth

    def lease_exists(self, lease_id: int) -> bool:
        return self._lessor.lookup(lease_id) is not None

    def apply(self, entries: Sequence[Entry]) -> ApplyResult:
        store = self._store
        applied = store.consistent_index
        out = ApplyResult(revision=store.current_rev)
        # Entries at or below the stored applied index were applied before a restart: the
        # state has them, but the Raft core still needs their configuration changes (it
        # restarts from its snapshot's configuration, as etcd's does).
        for entry in entries:
            if entry.index <= applied and entry.type == EntryType.CONF_CHANGE:
                self._conf_changes.apply_conf_change(ConfChange.decode(entry.data))
        todo = [e for e in entries if e.index > applied]
        if not todo:
            return out
        with store.write_batch(todo[0].index) as batch:
            for entry in todo:
                batch.set_applied_index(entry.index, entry.term)
                if entry.type == EntryType.CONF_CHANGE:
                    change = ConfChange.decode(entry.data)
                    self._conf_changes.apply_conf_change(change)
                    request_id = self._membership.apply_conf_change(change, batch)
                    if request_id:
                        out.results.append((request_id, self._membership.sorted()))
                elif entry.data:
                    request = internalpb.InternalRequest.FromString(entry.data)
                    response = self._apply_request(batch, request, out, entry.index)
                    out.results.append((request.id, response))
                # An empty normal entry is a new leader's first entry: nothing to do.
        out.revision = store.current_rev
        return out

    def _apply_request(
        self, batch: WriteBatch, request: internalpb.InternalRequest, out: ApplyResult,
        index: int,
    ) -> Any:
        which = request.WhichOneof("request")
        if which in AUTH_REQUESTS and self._auth is not None:
            try:
                return self._auth.apply(AuthRecords(batch.raw_txn, batch.dbs), request, index)
            except errors.EtcdError as error:
                return error
        if which == "compaction":
            return self._compact(batch, request.compaction, out)
        if which == "member_attributes_set":
            self._membership.set_attributes(request.member_attributes_set, batch)
            return None
        w = batch.txn()
        view = WriteTxnView(w)
        try:
            if self._auth is not None and self._auth.enabled:
                # etcd judges a write when it is applied, with the identity and auth
                # revision recorded at proposal, so a permission revoked meanwhile counts.
                self._auth.check_request(
                    request, lambda lease_id: attached_keys(batch.raw_txn, batch.dbs, lease_id))
            return self._dispatch(which, request, view, w)
        except errors.EtcdError as error:
            return error
        finally:
            out.events.extend(w.end())

    def _dispatch(self, which: str | None, request: internalpb.InternalRequest,
                  view: WriteTxnView, w: Any) -> Any:
        if which == "put":
            return txn.put(view, request.put, self.lease_exists)
        if which == "delete_range":
            return txn.delete_range(view, request.delete_range)
        if which == "txn":
            return txn.txn(view, request.txn, self.lease_exists)
        if which == "lease_grant":
            return self._lease_grant(w, request.lease_grant)
        if which == "lease_revoke":
            return self._lease_revoke(w, request.lease_revoke)
        if which == "lease_checkpoint":
            for cp in request.lease_checkpoint.checkpoints:
                with contextlib.suppress(LeaseNotFoundError):  # revoked meanwhile
                    w.lease_checkpoint(cp.ID, cp.remaining_TTL)
                    self._lessor.checkpoint(cp.ID, cp.remaining_TTL)
            return pb.LeaseCheckpointResponse()
        log.warning("unknown request in log entry; skipped", request=str(which))
        return None

    def _lease_grant(self, w: Any, r: pb.LeaseGrantRequest) -> Any:
        if r.TTL > MAX_LEASE_TTL_S:
            return errors.LeaseTTLTooLarge()
        ttl = max(r.TTL, self._min_lease_ttl_s)
        try:
            w.lease_grant(r.ID, ttl)
        except LeaseExistsError:
            return errors.LeaseExists()
        self._lessor.grant(r.ID, ttl)
        return pb.LeaseGrantResponse(ID=r.ID, TTL=ttl)

    def _lease_revoke(self, w: Any, r: pb.LeaseRevokeRequest) -> Any:
        try:
            w.lease_revoke(r.ID)
        except LeaseNotFoundError:
            return errors.LeaseNotFound()
        with contextlib.suppress(LeaseNotFoundError):
            self._lessor.revoke(r.ID)
        resp = pb.LeaseRevokeResponse()
        resp.header.revision = w.rev if w.changed else w.begin_rev
        return resp

    def _compact(self, batch: WriteBatch, r: pb.CompactionRequest, out: ApplyResult) -> Any:
        try:
            batch.schedule_compaction(r.revision)
        except CompactedError:
            return errors.Compacted()
        except FutureRevisionError:
            return errors.FutureRevision()
        out.compacted_to = r.revision
        resp = pb.CompactionResponse()
        resp.header.revision = batch.current_rev
        return resp

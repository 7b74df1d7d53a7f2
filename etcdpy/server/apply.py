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
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb
from etcdpy.raft import ConfChange, Entry, EntryType
from etcdpy.server import errors, txn
from etcdpy.server.mvcc_view import WriteTxnView, event_to_pb
from etcdpy.storage.errors import (
    CompactedError,
    FutureRevisionError,
    LeaseExistsError,
    LeaseNotFoundError,
)
from etcdpy.storage.mvcc.kvstore import KVStore, WriteBatch

log = logutil.get("apply")

# etcd refuses TTLs above this (lease.MaxLeaseTTL).
MAX_LEASE_TTL_S = 9_000_000_000


class NegativeLeaseID(errors.EtcdError):
    """etcd 3.5 grants a negative lease ID asked for explicitly; the lease storage takes
    positive ids only, so such a grant is refused here rather than stop the apply loop (which
    would stop it again on every restart, replaying the same entry)."""

    code = "INVALID_ARGUMENT"
    message = "etcdserver: negative lease ID is not supported"


class Lessor(Protocol):
    def grant(self, lease_id: int, ttl: int) -> Any: ...

    def revoke(self, lease_id: int) -> Any: ...

    def checkpoint(self, lease_id: int, remaining_ttl: int) -> None: ...

    def lookup(self, lease_id: int) -> Any | None: ...


class ConfChangeSink(Protocol):
    def apply_conf_change(self, entry: Entry, change: ConfChange, batch: WriteBatch) -> Any: ...


@dataclass
class ApplyResult:
    """What one batch produced, for the caller to hand out after the commit."""

    revision: int
    events: list[mvccpb.Event] = field(default_factory=list)
    results: list[tuple[int, Any]] = field(default_factory=list)  # (request id, response|error)
    compacted_to: int = 0


class Applier:
    def __init__(
        self,
        store: KVStore,
        lessor: Lessor,
        conf_changes: ConfChangeSink,
        min_lease_ttl_s: int,
    ) -> None:
        self._store = store
        self._lessor = lessor
        self._conf_changes = conf_changes
        self._min_lease_ttl_s = min_lease_ttl_s

    def lease_exists(self, lease_id: int) -> bool:
        return self._lessor.lookup(lease_id) is not None

    def apply(self, entries: Sequence[Entry]) -> ApplyResult:
        store = self._store
        applied = store.consistent_index
        todo = [e for e in entries if e.index > applied]
        out = ApplyResult(revision=store.current_rev)
        if not todo:
            return out
        with store.write_batch(todo[0].index) as batch:
            for entry in todo:
                batch.set_applied_index(entry.index)
                if entry.type == EntryType.CONF_CHANGE:
                    change = ConfChange.decode(entry.data)
                    result = self._conf_changes.apply_conf_change(entry, change, batch)
                    if result is not None:
                        out.results.append(result)
                elif entry.data:
                    request = internalpb.InternalRequest.FromString(entry.data)
                    response = self._apply_request(batch, request, out)
                    out.results.append((request.id, response))
                # An empty normal entry is a new leader's first entry: nothing to do.
        out.revision = store.current_rev
        return out

    def _apply_request(
        self, batch: WriteBatch, request: internalpb.InternalRequest, out: ApplyResult
    ) -> Any:
        which = request.WhichOneof("request")
        if which == "compaction":
            return self._compact(batch, request.compaction, out)
        w = batch.txn()
        view = WriteTxnView(w)
        try:
            return self._dispatch(which, request, view, w)
        except errors.EtcdError as error:
            return error
        finally:
            for event in w.end():
                out.events.append(event_to_pb(event))

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
        if r.ID < 0:
            return NegativeLeaseID()
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

"""The member's request facade: proposals, linearizable reads, leases, headers, status.

The gRPC servicers call this; it never imports grpc. Writes become `InternalRequest`
proposals and wait for their apply; linearizable reads share ReadIndex rounds; lease
renewals and expiry are decided by the leader only, and expiry is *proposed* (a revoke goes
through Raft) so every member deletes the same keys at the same revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from etcdpy import ETCD_SERVER_VERSION, logutil
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.internalpb import internal_pb2 as internalpb
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb
from etcdpy.cluster.bootstrap import load_members, load_removed
from etcdpy.cluster.membership import Member, compute_member_id, format_id
from etcdpy.peer.snapshot import SnapshotPayload
from etcdpy.raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    Message,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)
from etcdpy.server import errors, txn
from etcdpy.server.apply import Applier
from etcdpy.server.auth import ROOT_USER, AuthInfo, AuthStore
from etcdpy.server.auth_perms import PermType
from etcdpy.server.auth_tokens import SimpleTokens
from etcdpy.server.compactor import PeriodicCompactor, RevisionCompactor
from etcdpy.server.idgen import IdGenerator
from etcdpy.server.membership import MembershipView, encode_context
from etcdpy.server.membership import to_pb as member_to_pb
from etcdpy.server.mvcc_view import ReadTxnView, event_to_pb
from etcdpy.server.raft_node import RaftNode
from etcdpy.server.snapshots import SnapshotImages
from etcdpy.server.wait import Wait
from etcdpy.server.watch import WatchHub
from etcdpy.storage.env import LmdbEnv
from etcdpy.storage.errors import CompactedError, FutureRevisionError, LeaseNotFoundError
from etcdpy.storage.lease import NotPrimaryError
from etcdpy.storage.mvcc.kvstore import KVStore

log = logutil.get("server")

LEASE_EXPIRY_CHECK_S = 0.5
MAX_LEASE_REVOKES_PER_CHECK = 500  # etcd revokes at most 1000 leases a second
COMPACTION_STEP_KEYS = 1000
READ_INDEX_RETRY_S = 0.5
HEALTH_INTERVAL_S = 5.0  # etcd's HealthInterval


class MemberRemoved(Exception):
    """This member was removed from the cluster: it stops, as etcd's does."""

    def __str__(self) -> str:
        return "the member has been permanently removed from the cluster"


@dataclass(frozen=True)
class ServerSettings:
    member_id: int
    cluster_id: int
    max_txn_ops: int
    max_request_bytes: int
    request_timeout_s: float
    election_timeout_s: float
    min_lease_ttl_s: int
    quota_backend_bytes: int
    snapshot_count: int = 100_000
    snapshot_catchup_entries: int = 5_000
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: float = 0  # seconds (periodic) or revisions (revision)
    watch_progress_notify_interval_s: float = 600.0
    name: str = "default"
    client_urls: tuple[str, ...] = ()
    max_learners: int = 1
    strict_reconfig_check: bool = True
    auth_token_ttl_s: float = 300.0
    bcrypt_cost: int = 10
    # TEST-ONLY defect (ETCDPY_TEST_DEFECTS=read-local): a leader serves linearizable reads
    # from its local state without a ReadIndex round; never set outside the fault tests.
    unsafe_read_local: bool = False


class EtcdServer:
    def __init__(
        self,
        settings: ServerSettings,
        store: KVStore,
        lessor: Any,
        membership: MembershipView,
        db_size: Any,
        images: SnapshotImages | None = None,
        auth: AuthStore | None = None,
    ) -> None:
        self.settings = settings
        self.member_id = settings.member_id
        self.cluster_id = settings.cluster_id
        self.max_txn_ops = settings.max_txn_ops
        self.max_request_bytes = settings.max_request_bytes
        self._store = store
        self._lessor = lessor
        self.membership = membership
        self._db_size = db_size
        self._images = images
        self._ids = IdGenerator(settings.member_id, int(time.time() * 1000))
        self._wait = Wait()
        self.watch_hub = WatchHub(_StoreHistory(store), store.current_rev, event_to_pb)
        self.auth = auth or AuthStore(store.env, SimpleTokens(settings.auth_token_ttl_s),
                                      settings.bcrypt_cost)
        self.applier = Applier(store, lessor, self, membership, settings.min_lease_ttl_s,
                               self.auth)
        self.node: RaftNode | None = None  # set by the app before start()
        self.raft_log: Any = None  # LmdbRaftStorage, set by the app before start()
        # Since when (wall clock) a peer's link has been up, None if down (the transport's
        # view); etcd's reconfiguration checks count peers connected for HEALTH_INTERVAL_S.
        self.peer_active_since: Callable[[int], float | None] | None = None
        # A sole voter campaigns as soon as it has applied up to here (its bootstrap
        # entries), instead of waiting out an election timeout; 0 = do not.
        self.campaign_after_index = 0
        self.applied_index = store.consistent_index
        # The last index Raft handed to apply() (or installed by snapshot); below the applied
        # index after a restart, while Raft delivers again what the state already holds.
        # The Raft log is only ever cut below it (None: not known yet, see _maybe_snapshot).
        self._delivered_index: int | None = None
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._pending_reads: list[asyncio.Future[None]] = []
        self._read_wake = asyncio.Event()
        self._read_states: dict[bytes, asyncio.Future[int]] = {}
        self._compaction_wake = asyncio.Event()
        self._compaction_done: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.leader_changes = 0
        self.failed: asyncio.Future[None] = asyncio.Future()  # set when a core loop dies
        # Done once this member's attributes are in the cluster's member records.
        self.published: asyncio.Future[None] = asyncio.Future()

    # --- lifecycle ---

    def start(self) -> None:
        assert self.node is not None
        self.failed = asyncio.get_running_loop().create_future()
        for coro in (
            self.node.run(),
            self._read_loop(),
            self._lease_expiry_loop(),
            self._compaction_loop(),
            self._auto_compaction_loop(),
            self._progress_notify_loop(),
            self._publish_loop(),
            self.watch_hub.run_catch_up(),
        ):
            task = asyncio.create_task(coro)
            task.add_done_callback(self._on_task_done)
            self._tasks.append(task)
        if self._store.compaction_pending():
            self._compaction_wake.set()
        self._maybe_campaign()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        # These loops run for the member's lifetime (some end early when switched off); one
        # dying of an exception means the member can no longer keep its promises (etcd panics
        # in the same places): stop it.
        if self._stopped or task.cancelled() or self.failed.done():
            return
        error = task.exception()
        if error is not None:
            self.failed.set_exception(error)

    async def stop(self) -> None:
        self._stopped = True
        if self.node is not None:
            self.node.stop()
        self._wait.fail_all(errors.Stopped())
        for task in self._tasks[1:]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- state ---

    @property
    def term(self) -> int:
        return self.node.term if self.node else 0

    @property
    def leader_id(self) -> int:
        return self.node.lead if self.node else 0

    @property
    def is_learner(self) -> bool:
        me = self.membership.members.get(self.member_id)
        return me is not None and me.is_learner

    @property
    def is_leader(self) -> bool:
        return self.node is not None and self.node.role == StateType.LEADER

    def fill_header(self, header: pb.ResponseHeader, keep_revision: bool = False) -> None:
        header.cluster_id = self.cluster_id
        header.member_id = self.member_id
        header.raft_term = self.term
        if not keep_revision and header.revision == 0:
            header.revision = self._store.current_rev

    def members(self) -> list[Member]:
        return self.membership.sorted()

    def leader_client_urls(self) -> tuple[str, ...]:
        leader = self.membership.members.get(self.leader_id)
        return leader.client_urls if leader is not None else ()

    # --- KV ---

    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        if not r.serializable:
            await self.linearizable_barrier()
        who = self.auth.info()
        self.auth.check_range(who, r)
        with self._store.read() as view:
            resp = txn.range_(ReadTxnView(view), r)
        self._check_auth_unchanged(who)
        return resp

    def _check_auth_unchanged(self, who: AuthInfo) -> None:
        # A read judged at one auth revision is refused if the store moved on meanwhile
        # (etcd's doSerialize): the client retries with the new permissions.
        if who.revision and who.revision != self.auth.revision:
            raise errors.AuthOldRevision()

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        return await self._propose(internalpb.InternalRequest(put=r))

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        return await self._propose(internalpb.InternalRequest(delete_range=r))

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        if txn.is_read_only(r):
            # Served like a range, without a revision: linearizable unless every range in it
            # asked to be serializable (etcd's isTxnSerializable).
            if not _txn_serializable(r):
                await self.linearizable_barrier()
            who = self.auth.info()
            self.auth.check_txn(who, r)
            with self._store.read() as view:
                resp = txn.txn(ReadTxnView(view), r, self.applier.lease_exists)
            self._check_auth_unchanged(who)
            return resp
        return await self._propose(internalpb.InternalRequest(txn=r))

    async def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        resp = await self._propose(internalpb.InternalRequest(compaction=r))
        if r.physical:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._compaction_done.append(done)
            self._compaction_wake.set()
            await done
        return resp

    # --- leases ---

    async def lease_grant(self, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        request = pb.LeaseGrantRequest()
        request.CopyFrom(r)
        if request.ID == 0:
            request.ID = self._ids.next_lease_id()
        return await self._propose(internalpb.InternalRequest(lease_grant=request))

    async def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        return await self._propose(internalpb.InternalRequest(lease_revoke=r))

    def lease_renew(self, lease_id: int) -> int:
        try:
            return self._lessor.renew(lease_id)
        except LeaseNotFoundError:
            raise errors.LeaseNotFound() from None
        except NotPrimaryError:
            # Followers forward keep-alives to the leader (multi-member work).
            raise (errors.NoLeader() if self.leader_id == 0 else errors.NotLeader()) from None

    async def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        # Only the leader knows how long a lease has left (followers keep no deadlines).
        if not self.is_leader:
            raise errors.NoLeader() if self.leader_id == 0 else errors.NotLeader()
        lease = self._lessor.lookup(r.ID)
        if lease is None:
            return pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=-1)
        resp = pb.LeaseTimeToLiveResponse(
            ID=r.ID, TTL=self._lessor.remaining_ttl(r.ID), grantedTTL=lease.ttl
        )
        if r.keys:
            with self._store.read() as view:
                for rec, keys in view.leases():
                    if rec.id == r.ID:
                        resp.keys.extend(keys)
                        break
            if self.auth.enabled:
                # The key names are data too: the user must be allowed to read each one.
                who = self.auth.info()
                if not who.username:
                    raise errors.UserEmpty()
                for key in resp.keys:
                    self.auth.check_op(who, PermType.READ, key)
        return resp

    async def lease_leases(self) -> pb.LeaseLeasesResponse:
        resp = pb.LeaseLeasesResponse()
        for lease in self._lessor.leases():
            resp.leases.add(ID=lease.id)
        return resp

    async def _lease_expiry_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(LEASE_EXPIRY_CHECK_S)
            if not self.is_leader:
                continue
            for lease_id in self._lessor.expired(MAX_LEASE_REVOKES_PER_CHECK):
                asyncio.create_task(self._revoke_expired(lease_id))

    async def _revoke_expired(self, lease_id: int) -> None:
        request = internalpb.InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=lease_id))
        if self.auth.enabled:
            # An expired lease is revoked with root's rights (etcd's WithRoot); if the auth
            # store moves on before it applies, the revoke fails and is retried later.
            request.username = ROOT_USER
            request.auth_revision = self.auth.revision
        with contextlib.suppress(errors.EtcdError):
            await self._propose(request)

    # --- proposals ---

    async def propose(self, request: internalpb.InternalRequest) -> Any:
        """Replicate `request` and return what applying it answered (or raise its error)."""
        return await self._propose(request)

    def propose_then(self, request: internalpb.InternalRequest,
                     done: Callable[[Any], None]) -> None:
        """`propose` without a coroutine: `done` gets what applying answered, or the EtcdError
        (raised here instead when the request is refused before it is proposed). For callers
        that answer many requests at once (etcdpy.worker.writes), a task each would cost more
        than the proposal."""
        future, timer = self._start_proposal(request)
        request_id = request.id

        def finished(f: asyncio.Future[Any]) -> None:
            timer.cancel()
            if f.cancelled():  # the server stopped
                done(errors.Stopped())
                return
            error = f.exception()
            if isinstance(error, TimeoutError):
                self._wait.cancel(request_id)
                done(errors.Timeout())
            elif error is not None:
                done(error)
            else:
                done(f.result())

        future.add_done_callback(finished)

    def _start_proposal(self, request: internalpb.InternalRequest
                        ) -> tuple[asyncio.Future[Any], asyncio.TimerHandle]:
        """Stamp, register and propose `request`; its future and the timer that times it out."""
        assert self.node is not None
        if self._stopped:
            raise errors.Stopped()
        if not request.username and request.WhichOneof("request") != "authenticate":
            # Who asks, recorded in the entry: every member judges it the same when applying.
            who = self.auth.info()
            request.username = who.username
            request.auth_revision = who.revision
        request.id = self._ids.next()
        data = request.SerializeToString()
        if len(data) > self.max_request_bytes:
            raise errors.RequestTooLarge()
        future = self._wait.register(request.id)
        self.node.propose(request.id, data)
        # A timer rather than asyncio.wait_for, which costs a task per request before 3.12.
        timer = asyncio.get_running_loop().call_later(
            self.settings.request_timeout_s, _time_out, future)
        return future, timer

    async def _propose(self, request: internalpb.InternalRequest) -> Any:
        future, timer = self._start_proposal(request)
        try:
            result = await future
        except TimeoutError:
            self._wait.cancel(request.id)
            raise errors.Timeout() from None
        except asyncio.CancelledError:
            self._wait.cancel(request.id)  # the client went away
            raise
        finally:
            timer.cancel()
        if isinstance(result, errors.EtcdError):
            raise result
        return result

    # --- reads ---

    async def linearizable_barrier(self) -> None:
        """Return once this member has applied everything committed before the call."""
        if self.settings.unsafe_read_local and self.is_leader:
            return  # the test-only defect: no confirmation that this member still leads
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_reads.append(future)
        self._read_wake.set()
        await future

    async def _read_loop(self) -> None:
        """One ReadIndex round serves every read that arrived while the previous one ran."""
        assert self.node is not None
        loop = asyncio.get_running_loop()
        while not self._stopped:
            await self._read_wake.wait()
            self._read_wake.clear()
            batch, self._pending_reads = self._pending_reads, []
            if not batch:
                continue
            deadline = loop.time() + self.settings.request_timeout_s
            try:
                index = await self._read_index(deadline)
                await self._wait_applied(index, deadline)
            except errors.EtcdError as error:
                for future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for future in batch:
                if not future.done():
                    future.set_result(None)

    async def _read_index(self, deadline: float) -> int:
        assert self.node is not None
        loop = asyncio.get_running_loop()
        while True:
            ctx = self._ids.next().to_bytes(8, "big")
            answer: asyncio.Future[int] = loop.create_future()
            self._read_states[ctx] = answer
            self.node.read_index(ctx)
            wait_s = min(READ_INDEX_RETRY_S, deadline - loop.time())
            try:
                return await asyncio.wait_for(answer, max(wait_s, 0.001))
            except TimeoutError:
                if loop.time() >= deadline:
                    raise (errors.NoLeader() if self.leader_id == 0 else errors.Timeout()) from None
            finally:
                self._read_states.pop(ctx, None)

    async def _wait_applied(self, index: int, deadline: float) -> None:
        if self.applied_index >= index:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, future))
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(future, max(remaining, 0.001))
        except TimeoutError:
            raise errors.Timeout() from None

    # --- raft_node.StateMachine ---

    def apply(self, entries: Sequence[Entry]) -> None:
        result = self.applier.apply(entries)
        self.applied_index = max(self.applied_index, entries[-1].index)
        self._delivered_index = entries[-1].index
        self._maybe_campaign()
        if self.member_id in self.membership.removed and not self.failed.done():
            self.failed.set_exception(MemberRemoved())
        if result.events or result.revision != self.watch_hub.revision:
            self.watch_hub.notify(result.revision, result.events)
        for request_id, response in result.results:
            self._wait.trigger(request_id, response)
        if result.compacted_to:
            self.watch_hub.compacted(result.compacted_to)
            self._compaction_wake.set()
        if self._applied_waiters:
            still = []
            for index, future in self._applied_waiters:
                if index <= self.applied_index:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((index, future))
            self._applied_waiters = still

    def _maybe_campaign(self) -> None:
        if self.campaign_after_index and self.applied_index >= self.campaign_after_index:
            self.campaign_after_index = 0
            assert self.node is not None
            self.node.call(lambda rawnode: rawnode.campaign())

    def between_readies(self) -> None:
        # Once per Ready, after its log write and applies (raft_node.py): cutting the log
        # never races a write.
        self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        """Every `snapshot_count` applied entries, cut the Raft log (etcd's --snapshot-count).

        The state is made durable first: the log may only lose entries that the state env
        holds on disk, since after a crash the state is replayed from the log. A margin of
        `snapshot_catchup_entries` stays so a slow follower can catch up from the log."""
        log_store = self.raft_log
        if log_store is None:
            return
        snapshot_index = log_store.snapshot_metadata().index  # cached: this runs every Ready
        if self._delivered_index is None:
            self._delivered_index = snapshot_index  # Raft's `applied` at start (app.py)
        # Not the state's applied index: after a restart the state may be ahead of what Raft
        # has delivered again, and the entries in between must stay in the log until it has.
        index = min(self._delivered_index, self.applied_index)
        if index - snapshot_index <= self.settings.snapshot_count:
            return
        self._store.env.sync()
        assert self.node is not None
        snap = log_store.create_snapshot(index, self.node.conf_state(), b"")
        log.info("saved snapshot", **{"snapshot-index": snap.metadata.index})
        compact_to = index - self.settings.snapshot_catchup_entries
        if compact_to > log_store.first_index():
            log_store.compact(compact_to)
            log.info("compacted Raft logs", **{"compact-index": compact_to})

    def restore(self, snapshot: Snapshot) -> None:
        """Raft installed a snapshot from the leader: load its state image, then rebuild
        everything derived from the state (leases, members, watchers' positions)."""
        assert self._images is not None
        if not self._images.install(snapshot.metadata):
            raise RuntimeError(f"no state image for snapshot {snapshot.metadata.index}")
        self._store.refresh()
        self.applied_index = self._store.consistent_index
        self._delivered_index = snapshot.metadata.index
        with self._store.read() as view:
            self._lessor.recover(view.leases())
        self.membership.replace(load_members(self._store.env), load_removed(self._store.env))
        self.auth.load()
        self.watch_hub.resync(self._store.current_rev)
        log.info("restored state from snapshot", **{
            "snapshot-index": snapshot.metadata.index, "applied-index": self.applied_index,
            "revision": self._store.current_rev})

    def on_read_states(self, read_states: Sequence[ReadState]) -> None:
        for rs in read_states:
            future = self._read_states.get(rs.request_ctx)
            if future is not None and not future.done():
                future.set_result(rs.index)

    def on_soft_state(self, soft_state: SoftState, term: int) -> None:
        if soft_state.raft_state == StateType.LEADER:
            log.info("became leader", member=format_id(self.member_id), term=term)
            self._lessor.promote(self.settings.election_timeout_s)
        else:
            self._lessor.demote()
        if soft_state.lead:
            self.leader_changes += 1
            log.info(
                "leader elected", member=format_id(self.member_id),
                leader=format_id(soft_state.lead), term=term,
            )

    def on_proposal_dropped(self, request_id: int) -> None:
        error = errors.NoLeader() if self.leader_id == 0 else errors.TooManyRequests()
        self._wait.trigger(request_id, error)

    def apply_conf_change(self, change: ConfChange) -> Any:
        assert self.node is not None
        return self.node.apply_conf_change(change)

    # --- peers (the transport's MessageSink) ---

    def process(self, msg: Message) -> None:
        assert self.node is not None
        self.node.step(msg)

    def report_unreachable(self, node_id: int) -> None:
        assert self.node is not None
        self.node.call(lambda rawnode: rawnode.report_unreachable(node_id))

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        assert self.node is not None
        self.node.call(lambda rawnode: rawnode.report_snapshot(node_id, failed))

    def is_removed(self, node_id: int) -> bool:
        return node_id in self.membership.removed

    def report_removed_by_peer(self, node_id: int) -> None:
        # A member removed while cut off never applies its own removal; the peers that did
        # apply it refuse its streams, and that refusal is how it learns to stop (as etcd).
        if not self.failed.done():
            log.warning("peer says the local member was removed from the cluster",
                        **{"remote-peer-id": format_id(node_id)})
            self.failed.set_exception(MemberRemoved())

    def merge_snapshot(self, message: Message) -> Message:
        """etcd's merged snapshot: the state image taken when the message leaves holds
        everything applied so far, so the message says so (applied index and its term, and
        the configuration now) instead of the older Raft snapshot's. A member added after
        that snapshot is in this configuration, so it accepts the snapshot."""
        assert message.snapshot is not None and self.node is not None and self.raft_log
        index = self.applied_index
        meta = SnapshotMetadata(conf_state=self.node.conf_state(), index=index,
                                term=self.raft_log.term(index))
        return dataclasses.replace(message, snapshot=Snapshot(b"", meta))

    def snapshot_payload(self, msg: Message) -> SnapshotPayload:
        """The state image travels with the snapshot; LMDB copies it from one read
        transaction in a worker thread, so writes go on meanwhile. It holds at least what
        `merge_snapshot` labelled the message with (the applied index only grows)."""
        images = self._images
        assert images is not None
        return SnapshotPayload.deferred(
            lambda: SnapshotPayload.from_file(str(images.outgoing(msg.to)))
        )

    def snapshot_received(self, msg: Message, payload_path: str) -> None:
        assert self._images is not None and self.node is not None
        assert msg.snapshot is not None
        self._images.keep_incoming(msg.snapshot.metadata, payload_path)
        self.node.step(msg)

    # --- membership (Cluster service) ---

    async def member_add(self, peer_urls: Sequence[str], is_learner: bool) -> tuple[Member, list[Member]]:
        urls = tuple(sorted(peer_urls))
        if not urls or not all(_valid_peer_url(u) for u in urls):
            raise errors.MemberBadURLs()
        for m in self.membership.members.values():
            if set(m.peer_urls) & set(urls):
                raise errors.PeerURLExists()
        if is_learner:
            learners = sum(1 for m in self.membership.members.values() if m.is_learner)
            if learners >= self.settings.max_learners:
                raise errors.TooManyLearners()
        else:
            self._check_may_add_voter()
        member_id = compute_member_id(urls, "", now_s=int(time.time()))
        if member_id in self.membership.members or member_id in self.membership.removed:
            raise errors.MemberExists()
        member = Member(member_id, "", urls, (), is_learner)
        change_type = ConfChangeType.ADD_LEARNER_NODE if is_learner else ConfChangeType.ADD_NODE
        members = await self._propose_conf_change(change_type, member)
        return member, members

    async def member_remove(self, member_id: int) -> list[Member]:
        member = self.membership.members.get(member_id)
        if member is None:
            raise errors.MemberNotFound()
        if not member.is_learner:
            self._check_may_remove_voter(member_id)
        return await self._propose_conf_change(ConfChangeType.REMOVE_NODE, member)

    async def member_update(self, member_id: int, peer_urls: Sequence[str]) -> list[Member]:
        member = self.membership.members.get(member_id)
        if member is None:
            raise errors.MemberNotFound()
        urls = tuple(sorted(peer_urls))
        if not urls or not all(_valid_peer_url(u) for u in urls):
            raise errors.MemberBadURLs()
        for m in self.membership.members.values():
            if m.id != member_id and set(m.peer_urls) & set(urls):
                raise errors.PeerURLExists()
        updated = Member(member.id, member.name, urls, member.client_urls, member.is_learner)
        return await self._propose_conf_change(ConfChangeType.UPDATE_NODE, updated)

    async def member_promote(self, member_id: int) -> list[Member]:
        member = self.membership.members.get(member_id)
        if member is None:
            raise errors.MemberNotFound()
        if not member.is_learner:
            raise errors.MemberNotLearner()
        if not self.is_leader:
            raise errors.NotLeader() if self.leader_id else errors.NoLeader()
        assert self.node is not None
        status = self.node.status()
        progress = (getattr(status, "progress", None) or {}).get(member_id)
        leader_index = self.node.committed_index
        # etcd: a learner may be promoted once it has at least 90% of the leader's log.
        if progress is None or progress.match < 0.9 * leader_index:
            raise errors.LearnerNotReady()
        promoted = Member(member.id, member.name, member.peer_urls, member.client_urls, False)
        return await self._propose_conf_change(ConfChangeType.ADD_NODE, promoted)

    def _started_voters(self, excluding: int = 0) -> int:
        """Voters that have published themselves (etcd counts a member with a name as started)."""
        return sum(1 for m in self.membership.voters() if m.id != excluding and m.name)

    def _connected_since(self, since: float, excluding: int = 0) -> int:
        """Voters (this one included) whose link has been up since `since` (wall clock)."""
        assert self.peer_active_since is not None
        count = 0
        for m in self.membership.voters():
            if m.id == excluding:
                continue
            if m.id == self.member_id:
                count += 1
                continue
            up = self.peer_active_since(m.id)
            if up is not None and up <= since:
                count += 1
        return count

    def _check_may_add_voter(self) -> None:
        """etcd's --strict-reconfig-check for MemberAdd of a voter (mayAddMember)."""
        if not self.settings.strict_reconfig_check or self.peer_active_since is None:
            return
        voters_after = len(self.membership.voters()) + 1
        if self._started_voters() < voters_after // 2 + 1:
            raise errors.NotEnoughStartedMembers()
        since = time.time() - HEALTH_INTERVAL_S
        if self._connected_since(since) < len(self.membership.voters()):
            raise errors.UnhealthyCluster()

    def _check_may_remove_voter(self, member_id: int) -> None:
        """etcd's --strict-reconfig-check for MemberRemove of a voter (mayRemoveMember)."""
        if not self.settings.strict_reconfig_check or self.peer_active_since is None:
            return
        voters = len(self.membership.voters())
        if self._started_voters(excluding=member_id) < (voters - 1) // 2 + 1:
            raise errors.NotEnoughStartedMembers()
        # A member that is down is safe to remove: it is not part of the active quorum.
        if member_id != self.member_id and self.peer_active_since(member_id) is None:
            return
        active = self._connected_since(time.time() - HEALTH_INTERVAL_S)
        if active - 1 < 1 + (voters - 1) // 2:
            raise errors.UnhealthyCluster()

    async def _propose_conf_change(self, change_type: ConfChangeType, member: Member) -> list[Member]:
        assert self.node is not None
        request_id = self._ids.next()
        change = ConfChange(change_type, member.id, encode_context(member_to_pb(member), request_id))
        future = self._wait.register(request_id)
        self.node.propose_conf_change(request_id, change)
        try:
            result = await asyncio.wait_for(future, self.settings.request_timeout_s)
        except TimeoutError:
            self._wait.cancel(request_id)
            raise errors.Timeout() from None
        if isinstance(result, errors.EtcdError):
            raise result
        return list(result)

    async def _publish_loop(self) -> None:
        """Tell the cluster our name and client URLs through Raft (etcd's publish).

        Like etcd, the attributes are proposed on every start, even when the member records
        already hold them, and clients are served only once that proposal is applied. Its
        application is what proves this member has caught up: it has applied everything
        committed before it, and a leader has committed an entry of its own term. Without it,
        a single member restarted after acknowledging a write whose commit index was not yet
        on disk would answer linearizable reads before re-committing that write (its
        ReadIndex, as a lone voter, is its commit index from disk).
        """
        wanted = internalpb.MemberAttributesSet(
            member_id=self.member_id, name=self.settings.name,
            client_urls=list(self.settings.client_urls),
        )
        while not self._stopped:
            if self.leader_id:
                try:
                    await self._propose(internalpb.InternalRequest(member_attributes_set=wanted))
                except errors.EtcdError:
                    pass  # no leader after all, or a timeout: try again, as etcd does
                else:
                    log.info("published local member to cluster through raft", **{
                        "local-member-id": format_id(self.member_id), "name": wanted.name,
                        "client-urls": list(wanted.client_urls)})
                    if not self.published.done():
                        self.published.set_result(None)
                    return
            await asyncio.sleep(0.2)

    # --- maintenance ---

    async def move_leader(self, target: int) -> None:
        """Hand leadership to `target` (etcdctl move-leader) and wait until it leads."""
        if not self.is_leader:
            raise errors.NotLeader()
        member = self.membership.members.get(target)
        if member is None or member.is_learner:
            raise errors.BadLeaderTransferee()
        if target == self.member_id:
            return
        assert self.node is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout_s
        self.node.call(lambda rawnode: rawnode.transfer_leader(target))
        while self.leader_id != target:
            if loop.time() > deadline:
                raise errors.TimeoutDueToLeaderFail()
            await asyncio.sleep(self.settings.election_timeout_s / 20)
        log.info("leadership transfer finished", **{
            "old-leader-member-id": format_id(self.member_id),
            "new-leader-member-id": format_id(target)})

    @property
    def state_env(self) -> LmdbEnv:
        """The applied state's LMDB environment, for Maintenance (hash, defragment, snapshot),
        which work on the whole file. Used on the event loop thread only."""
        return self._store.env

    def status(self) -> pb.StatusResponse:
        assert self.node is not None
        size, in_use = self._db_size()
        return pb.StatusResponse(
            version=ETCD_SERVER_VERSION,
            dbSize=size,
            dbSizeInUse=in_use,
            leader=self.leader_id,
            raftIndex=self.node.committed_index,
            raftTerm=self.term,
            raftAppliedIndex=self.applied_index,
            isLearner=self.is_learner,
            dbSizeQuota=self.settings.quota_backend_bytes,
        )

    def hash_kv(self, revision: int) -> pb.HashKVResponse:
        try:
            hash_value, current_rev, compact_rev = self._store.hash_kv(revision)
        except CompactedError:
            raise errors.Compacted() from None
        except FutureRevisionError:
            raise errors.FutureRevision() from None
        resp = pb.HashKVResponse(
            hash=hash_value, compact_revision=max(compact_rev, 0),
            hash_revision=revision if revision > 0 else current_rev,
        )
        resp.header.revision = current_rev
        return resp

    async def _progress_notify_loop(self) -> None:
        interval = self.settings.watch_progress_notify_interval_s
        while not self._stopped:
            # etcd adds up to 10% jitter so many members' notifications do not align.
            await asyncio.sleep(interval * (1 + 0.1 * random.random()))
            self.watch_hub.progress_tick()

    async def _auto_compaction_loop(self) -> None:
        """The leader compacts on etcd's auto-compaction schedule (followers only sample)."""
        mode = self.settings.auto_compaction_mode
        retention = self.settings.auto_compaction_retention
        if retention <= 0:
            return
        loop = asyncio.get_running_loop()
        if mode == "revision":
            by_revision = RevisionCompactor(int(retention))
            while not self._stopped:
                await asyncio.sleep(by_revision.check_interval_s)
                target = by_revision.check(self._store.current_rev)
                if target is not None and self.is_leader and await self._auto_compact(target):
                    by_revision.compacted(target)
            return
        periodic = PeriodicCompactor(retention, loop.time())
        while not self._stopped:
            await asyncio.sleep(periodic.sample_interval_s)
            target = periodic.sample(loop.time(), self._store.current_rev)
            if target is not None and self.is_leader and await self._auto_compact(target):
                periodic.compacted(loop.time())

    async def _auto_compact(self, revision: int) -> bool:
        log.info("starting auto compaction", revision=revision,
                 mode=self.settings.auto_compaction_mode)
        try:
            await self.compact(pb.CompactionRequest(revision=revision))
        except errors.Compacted:
            return True
        except errors.EtcdError as error:
            log.warning("failed auto compaction", revision=revision, error=error.message)
            return False
        log.info("completed auto compaction", revision=revision)
        return True

    async def _compaction_loop(self) -> None:
        """Physical compaction in small steps, so applies and reads keep going meanwhile."""
        while not self._stopped:
            await self._compaction_wake.wait()
            self._compaction_wake.clear()
            while self._store.compaction_pending():
                self._store.compact_step(COMPACTION_STEP_KEYS)
                await asyncio.sleep(0)
            done, self._compaction_done = self._compaction_done, []
            for future in done:
                if not future.done():
                    future.set_result(None)


def _time_out(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _valid_peer_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port is not None
    except ValueError:
        return False


def _txn_serializable(r: pb.TxnRequest) -> bool:
    for op in (*r.success, *r.failure):
        which = op.WhichOneof("request")
        if which == "request_range" and not op.request_range.serializable:
            return False
        if which == "request_txn" and not _txn_serializable(op.request_txn):
            return False
    return True


class _StoreHistory:
    """The store's history in the watch hub's terms (protobuf events, whole revisions)."""

    def __init__(self, store: KVStore) -> None:
        self._store = store

    def compacted_revision(self) -> int:
        # -1 when never compacted, as etcd reports it (a negative start revision then gets
        # compact_revision -1).
        return self._store.compact_rev

    def events(self, key: bytes, range_end: bytes, start_rev: int, end_rev: int, limit: int,
               prev_kv: bool) -> list[mvccpb.Event]:
        while True:
            events = self._store.events(key, range_end, start_rev, end_rev + 1, limit, prev_kv)
            if len(events) < limit:
                return [event_to_pb(e) for e in events]
            last_rev = events[-1].kv.mod_revision
            whole = [e for e in events if e.kv.mod_revision != last_rev]
            if whole:
                return [event_to_pb(e) for e in whole]
            limit *= 2  # one revision alone is bigger than the limit: take all of it

"""One simulated member running the real server layer, synchronously.

Where `node.py` keeps a toy KV in memory, a `ServerNode` holds what `etcdpy/app.py` wires
together for a real member: `MemberEnvs` (two LMDB environments in its own directory),
`LmdbRaftStorage` as the core's storage, the MVCC `KVStore`, the `Lessor`, the
`MembershipView` and the server's `Applier`, plus `SnapshotImages` for state images shipped
with MsgSnap.  No asyncio and no threads: the driver (server_cluster.py) calls the steps of
`RaftNode._handle_ready` one by one, so it can crash the member between any two of them.

A crash closes the environments (what a committed LMDB transaction wrote survives: kill -9,
not power loss) and drops every other object; `open()` rebuilds them from the directory the
way app.py does, with `RaftConfig.applied` = the Raft snapshot's index.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.cluster.bootstrap import load_members, load_removed
from etcdpy.cluster.membership import Member
from etcdpy.raft import (
    ConfChange,
    ConfState,
    Entry,
    HardState,
    Message,
    RaftConfig,
    RawNode,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
)
from etcdpy.server import txn
from etcdpy.server.apply import Applier, ApplyResult
from etcdpy.server.membership import MembershipView, to_record
from etcdpy.server.mvcc_view import ReadTxnView
from etcdpy.server.snapshots import SnapshotImages
from etcdpy.storage.env import EnvOptions, MemberEnvs
from etcdpy.storage.lease import Lessor
from etcdpy.storage.members import Members
from etcdpy.storage.mvcc.kvstore import KVStore
from etcdpy.storage.raft_log import LmdbRaftStorage

MIB = 1 << 20
# Small maps: LMDB reserves address space, and a run has up to 5 members open at once.
ENV_OPTIONS = EnvOptions(quota_backend_bytes=64 * MIB, raft_map_bytes=256 * MIB)
SNAPSHOT_COUNT = 8  # etcd's --snapshot-count, tiny so that logs are cut all the time
CATCHUP_ENTRIES = 3  # --experimental-snapshot-catchup-entries, tiny so followers need MsgSnap


@dataclass(frozen=True, slots=True)
class NodeState:
    """What the state agreement check compares between members at one applied index."""

    applied: int
    revision: int
    compact_revision: int
    hash: int
    leases: tuple[tuple[int, int, int, int], ...]  # (id, ttl, checkpointed ttl, keys)


@dataclass(slots=True)
class Running:
    """The objects of one incarnation of the member (all gone after a crash)."""

    envs: MemberEnvs
    raft_log: LmdbRaftStorage
    store: KVStore
    lessor: Lessor
    membership: MembershipView
    images: SnapshotImages
    applier: Applier
    raw: RawNode


class ServerNode:
    """Invariant: `run` is None exactly when the member is down; while it is up, the core's
    storage is `run.raft_log` and `run.store.consistent_index` is the applied index."""

    def __init__(self, node_id: int, data_dir: Path, voters: Sequence[int],
                 bug: str | None = None, join: Sequence[Member] | None = None) -> None:
        """voters: the founding members (bootstrap); join: instead, the members the cluster
        reports to a member added later (`--initial-cluster-state existing`)."""
        self.id = node_id
        self.join = tuple(join) if join is not None else None
        self.retired = False  # applied its own removal: stopped for good
        self.bug = bug  # a deliberate bug (SERVER_BUGS in server_cluster.py), for the tests
        self.data_dir = data_dir
        self.voters = tuple(voters)
        self.run: Running | None = None
        self.state = StateType.FOLLOWER
        self.lead = 0
        self.restarts = 0
        # RaftNode's commit-only hard state held back from the log (lost by a crash)
        self.unsaved_hard_state: HardState | None = None
        self.delivered: int | None = None  # EtcdServer._delivered_index

    @property
    def alive(self) -> bool:
        return self.run is not None

    def r(self) -> Running:
        assert self.run is not None, f"node {self.id} is down"
        return self.run

    # --- lifecycle -----------------------------------------------------------------

    def open(self, rng: random.Random, clock: Callable[[], float], election_tick: int,
             max_msg_size: int) -> None:
        """Start (or restart) the member from its directory, as app.py does."""
        assert self.run is None
        envs = MemberEnvs(self.data_dir, ENV_OPTIONS)
        raft_log = LmdbRaftStorage(envs.raft)
        if raft_log.member_id() == 0:
            if self.join is None:
                self._bootstrap(envs, raft_log)
            else:
                self._join(envs, raft_log)
        store = KVStore(envs.state)
        images = SnapshotImages(envs.member_dir / "snap", envs.state)
        images.recover(raft_log.snapshot().metadata, store.consistent_index)
        store.refresh()
        lessor = Lessor(clock, 0)
        with store.read() as view:
            lessor.recover(view.leases())
        membership = MembershipView(load_members(envs), load_removed(envs))
        cfg = RaftConfig(
            id=self.id,
            election_tick=election_tick,
            heartbeat_tick=1,
            applied=raft_log.snapshot().metadata.index,
            check_quorum=True,
            pre_vote=True,
            max_size_per_msg=max_msg_size,
            max_inflight_msgs=8,
            rng=rng,
        )
        raw = RawNode(cfg, raft_log)
        applier = Applier(store, lessor, self, membership, 0)
        self.run = Running(envs, raft_log, store, lessor, membership, images, applier, raw)
        self.state, self.lead = StateType.FOLLOWER, 0
        if store.compaction_pending():  # the real server's compaction loop resumes it
            store.run_compaction()

    def _bootstrap(self, envs: MemberEnvs, raft_log: LmdbRaftStorage) -> None:
        """bootstrap_or_restart for a founding member: member records, then the log."""
        with envs.state.begin(write=True) as t:
            records = Members(t, envs.state.dbs)
            for v in self.voters:
                records.put(to_record(Member(v, f"m{v}", (f"sim://{v}",))))
        envs.state.sync()
        raft_log.bootstrap(self.voters)
        raft_log.set_member_id(self.id)  # last: marks a finished bootstrap

    def _join(self, envs: MemberEnvs, raft_log: LmdbRaftStorage) -> None:
        """bootstrap._join_existing: the members as the cluster reports them, an empty log
        (the leader sends the log or a snapshot)."""
        assert self.join is not None
        with envs.state.begin(write=True) as t:
            records = Members(t, envs.state.dbs)
            for m in self.join:
                records.put(to_record(m))
        envs.state.sync()
        raft_log.set_member_id(self.id)

    def crash(self) -> None:
        """kill -9: committed LMDB transactions stay, everything in memory goes."""
        self.r().envs.close()
        self.run = None
        self.unsaved_hard_state = None
        self.delivered = None
        self.state, self.lead = StateType.FOLLOWER, 0

    # --- the Ready steps (RaftNode._handle_ready, one at a time) -----------------------

    def will_write(self, rd: Ready) -> bool:
        """Whether RaftNode writes the log for this Ready (a commit-only hard state waits)."""
        return rd.snapshot is not None or bool(rd.entries) or rd.must_sync

    def persist(self, rd: Ready) -> None:
        """RaftNode's log write, with its lazy commit-only hard state."""
        snap = rd.snapshot if rd.snapshot is not None and not rd.snapshot.is_empty() else None
        hard_state = rd.hard_state
        if not self.will_write(rd):
            if hard_state is not None:
                self.unsaved_hard_state = hard_state
            return
        hard_state = hard_state or self.unsaved_hard_state
        self.unsaved_hard_state = None
        if snap is not None or rd.entries or hard_state is not None:
            self.r().raft_log.save(hard_state, rd.entries, snap, rd.must_sync)

    def restore(self, snapshot: Snapshot) -> None:
        """EtcdServer.restore: load the state image, rebuild what derives from the state."""
        run = self.r()
        if not run.images.install(snapshot.metadata):
            raise RuntimeError(f"no state image for snapshot {snapshot.metadata.index}")
        run.store.refresh()
        self.delivered = snapshot.metadata.index
        with run.store.read() as view:
            run.lessor.recover(view.leases())
        run.membership.replace(load_members(run.envs.state), load_removed(run.envs.state))
        if run.store.compaction_pending():
            run.store.run_compaction()

    def apply(self, entries: Sequence[Entry]) -> ApplyResult:
        run = self.r()
        if self.bug == "drop-last-apply" and len(entries) > 1:
            entries = entries[:-1]  # the state misses one entry the core thinks applied
        result = run.applier.apply(entries)
        self.delivered = entries[-1].index
        if result.compacted_to:
            # The real server compacts in a background loop; here at once, on every member
            # alike, so that the hashes compared below see the same physical state.
            run.store.run_compaction()
        return result

    def between_readies(self) -> None:
        """EtcdServer.between_readies: after the Ready's log write and applies."""
        self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        """EtcdServer._maybe_snapshot: sync the state, record a snapshot, cut the log."""
        run = self.r()
        snapshot_index = run.raft_log.snapshot().metadata.index
        if self.delivered is None:
            self.delivered = snapshot_index
        applied = min(self.delivered, run.store.consistent_index)
        if applied - snapshot_index <= SNAPSHOT_COUNT:
            return
        if self.bug == "compact-without-snapshot":
            run.raft_log.compact(applied)  # restarts replay from a snapshot the log outran
            return
        run.envs.state.sync()
        run.raft_log.create_snapshot(applied, run.raw.conf_state(), b"")
        compact_to = applied - CATCHUP_ENTRIES
        if compact_to > run.raft_log.first_index():
            run.raft_log.compact(compact_to)

    # --- ConfChangeSink for the Applier ------------------------------------------------

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        return self.r().raw.apply_conf_change(change)

    # --- snapshots between members --------------------------------------------------------

    def merged_snapshot_meta(self) -> SnapshotMetadata:
        """EtcdServer.merge_snapshot: the image taken now holds everything applied so far."""
        run = self.r()
        index = run.store.consistent_index
        return SnapshotMetadata(conf_state=run.raw.conf_state(), index=index,
                                term=run.raft_log.term(index))

    def receive_snapshot_image(self, msg: Message, image: Path) -> None:
        """EtcdServer.snapshot_received: make the image durable under the snapshot's name."""
        assert msg.snapshot is not None
        incoming = self.r().images.dir / "incoming.sim.tmp"
        incoming.write_bytes(image.read_bytes())
        self.r().images.keep_incoming(msg.snapshot.metadata, str(incoming))

    # --- reads and checks ---------------------------------------------------------------------

    def range_latest(self, key: bytes) -> pb.RangeResponse:
        """A linearizable read's second half: Range over a read view of the applied state."""
        with self.r().store.read() as view:
            return txn.range_(ReadTxnView(view), pb.RangeRequest(key=key))

    def range_at(self, key: bytes, revision: int) -> pb.RangeResponse:
        with self.r().store.read() as view:
            return txn.range_(ReadTxnView(view), pb.RangeRequest(key=key, revision=revision))

    def node_state(self) -> NodeState:
        store = self.r().store
        h, rev, compact = store.hash_kv(0)
        with store.read() as view:
            leases = tuple(sorted((rec.id, rec.ttl, rec.remaining_ttl, len(keys))
                                  for rec, keys in view.leases()))
        return NodeState(store.consistent_index, rev, compact, h, leases)

    def members_digest(self) -> tuple[tuple[int, bool, tuple[str, ...]], ...]:
        """The member records (id, learner, peer URLs) and the removed IDs, as applied."""
        view = self.r().membership
        removed = tuple((i, True, ("removed",)) for i in sorted(view.removed))
        return tuple((m.id, m.is_learner, m.peer_urls) for m in view.sorted()) + removed

    def applied(self) -> int:
        return self.r().store.consistent_index

    def term(self) -> int:
        return self.r().raw.status().hard_state.term

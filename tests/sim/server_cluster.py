"""The simulation driver for the real server layer (`scripts/sim --server`).

Same shape as cluster.py (one seed drives separate `random.Random` streams; a SimNetwork
between members; faults drawn per seed by profile.py; checks after every step), but each
member is a `ServerNode`: LMDB Raft log and MVCC state, the server's Applier, state images
shipped with MsgSnap.  Clients send real `InternalRequest`s (put, delete, txn with a
compare, lease grant and revoke, compaction) and linearizable reads (ReadIndex, then Range
over a read view).  Crashes are kill -9 (LMDB keeps committed transactions), at random
points inside a Ready as well as between steps.  Membership changes go through the
server's path too: a ConfChange whose context carries the member, applied by the Applier
into the member records; an added member starts as `--initial-cluster-state existing` does
(member records, empty log); a member that applies its own removal stops for good.

Directories live under /dev/shm when it exists (LMDB fsyncs every commit; on tmpfs that
costs nothing) and are removed when the run ends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import shutil
import tempfile
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.internalpb import internal_pb2 as internalpb
from etcdpy.cluster.membership import Member
from etcdpy.raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    Message,
    MessageType,
    ProposalDropped,
    RaftError,
    Ready,
    Snapshot,
    StateType,
)
from etcdpy.server.errors import EtcdError
from etcdpy.server.membership import decode_context, encode_context, to_pb
from etcdpy.storage.snapshot import write_state_snapshot

from .checkers import ApplyOrder, CommitLog, ElectionSafety, Membership, Violation
from .network import CALM, SimNetwork
from .node import describe
from .profile import EventKind, FaultProfile, draw_profile
from .server_checks import (
    Acked,
    AckedWrites,
    LinearReads,
    ServerInvariant,
    ServerViolation,
    StateAgreement,
    check_revision_steps,
)
from .server_node import ServerNode

ELECTION_TICK = 10
TICK_SECONDS = 0.1  # virtual seconds per tick, for the Lessor's clock
MAX_READY_ROUNDS = 64
KEYS = 5
MAX_IMAGES = 32  # state images in flight on the network; older MsgSnaps are lost
MAX_ACKED = 20_000
MAX_EXPIRED_PER_TICK = 4
LIVENESS_BUDGET_TICKS = 60 * ELECTION_TICK
LIVENESS_BUDGET_EVENTS = 200 * LIVENESS_BUDGET_TICKS
TRACE_TAIL = 60
MAX_NODES = 9  # ever created, including joiners whose conf change never committed
MAX_VOTERS = 7
MIN_VOTERS_FOR_REMOVE = 4  # remove a voter only from 4+, so 3 remain to ride out crashes
# Deliberate bugs, each of which some check must catch (test_server_sim's teeth tests).
SERVER_BUGS = {
    "read-before-apply": "serve a ReadIndex read before applying up to its index",
    "drop-last-apply": "the applier leaves out the last entry of each batch",
    "compact-without-snapshot": "cut the Raft log at the applied index without a snapshot",
}


class CrashAt(IntEnum):
    """Where inside one Ready a member is killed (RaftNode._handle_ready's steps)."""

    NONE = 0
    AFTER_SEND = 1  # `messages` are out, nothing saved
    AFTER_SAVE = 2  # the log write is done, `persisted_messages` not sent
    AFTER_APPLY = 3  # applied (state committed), advance() never called


@dataclass(frozen=True, slots=True)
class ClientOp:
    """What a client waits for on the member it sent the request to."""

    kind: str
    key: bytes
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class ServerRunStats:
    steps: int
    ticks: int
    applied: int
    revision: int
    leaders: int
    acked_writes: int
    reads_served: int
    crashes: int
    snapshots_installed: int
    conf_changes: int  # membership changes applied on the member that proposed them
    messages: int


@dataclass(frozen=True, slots=True)
class ServerRunResult:
    seed: int
    nodes: int
    steps: int
    bug: str | None
    violation: Exception | None
    trace_tail: tuple[str, ...]
    trace_hash: str
    stats: ServerRunStats

    def replay_command(self) -> str:
        bug = f" --bug {self.bug}" if self.bug else ""
        return (f"scripts/sim --server --seed {self.seed} --nodes {self.nodes} "
                f"--steps {self.steps}{bug} -v")


@contextmanager
def _scratch_dir() -> Iterator[Path]:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = Path(tempfile.mkdtemp(prefix="etcdpy-simsrv-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class ServerSimulation:
    def __init__(self, seed: int, nodes: int = 3, steps: int = 2000,
                 verbose: bool = False, bug: str | None = None) -> None:
        assert 1 <= nodes <= 7 and steps >= 0
        assert bug is None or bug in SERVER_BUGS, bug
        self.bug = bug
        self.seed = seed
        self.initial_nodes = nodes
        self.steps = steps
        self.verbose = verbose
        master = random.Random(seed)
        self.rng = random.Random(master.getrandbits(64))
        self.profile: FaultProfile = draw_profile(random.Random(master.getrandbits(64)))
        self.net: SimNetwork[Message] = SimNetwork(
            random.Random(master.getrandbits(64)), self.profile.net, capacity=4000
        )
        self.node_seeds = random.Random(master.getrandbits(64))
        self.now = 0
        self.step_no = 0
        self.nodes: dict[int, ServerNode] = {}
        self.log = CommitLog()
        self.elections = ElectionSafety()
        self.members = Membership()
        self.applies = ApplyOrder(self.log)
        self.agreement = StateAgreement()
        self.acked = AckedWrites()
        self.reads = LinearReads(self.acked)
        self.trace: deque[str] = deque(maxlen=TRACE_TAIL)
        self._hash = hashlib.sha256()
        self._req_seq = 0
        self._read_seq = 0
        self._img_seq = 0
        self._images: dict[int, Path] = {}
        self._pending: dict[int, dict[int, ClientOp]] = {}  # node -> request id -> op
        self._applied_at_crash: dict[int, int] = {}
        self._snap_reports: dict[tuple[int, int], int] = {}
        self._leases: list[int] = []
        self._marker: tuple[int, int] | None = None  # (request id, applied index or 0)
        self._leaders = self._crashes = self._installs = self._confs = 0
        self._in_liveness = False
        self.root = Path()

    # --- trace ---------------------------------------------------------------------------

    def _event(self, text: str) -> None:
        line = f"#{self.step_no} t{self.now} {text}"
        self._hash.update(line.encode())
        self.trace.append(line)
        if self.verbose:
            print(line)

    # --- lifecycle -----------------------------------------------------------------------

    def _clock(self) -> float:
        return self.now * TICK_SECONDS

    def _start(self, node: ServerNode) -> None:
        node.open(random.Random(self.node_seeds.getrandbits(64)), self._clock, ELECTION_TICK,
                  self.profile.max_msg_size)
        run = node.r()
        self._pending[node.id] = {}
        self.applies.restore(node.id, run.raft_log.snapshot().metadata.index)
        before = self._applied_at_crash.pop(node.id, 0)
        if node.applied() < before:
            raise ServerViolation(
                ServerInvariant.DURABILITY,
                f"node {node.id} restarts at applied index {node.applied()}, it had "
                f"applied {before} before the crash",
            )
        self.agreement.observe(node.id, node.node_state())

    def _crash(self, node: ServerNode, why: str) -> None:
        self._applied_at_crash[node.id] = node.applied()
        node.crash()
        self._pending[node.id] = {}
        self.reads.forget_node(node.id)
        self._crashes += 1
        self._event(f"crash {node.id} ({why})")

    def _restart(self, node: ServerNode) -> None:
        node.restarts += 1
        self._start(node)
        run = node.r()
        self._event(f"restart {node.id}: {run.raft_log.hard_state()}, applied "
                    f"{node.applied()}, log {run.raft_log.first_index()}.."
                    f"{run.raft_log.last_index()}")

    def _close_all(self) -> None:
        for node in self.nodes.values():
            if node.alive:
                node.crash()

    # --- the Ready loop --------------------------------------------------------------------

    def _process_all(self) -> None:
        for nid in sorted(self.nodes):
            node = self.nodes[nid]
            rounds = 0
            while node.run is not None and rounds < MAX_READY_ROUNDS and node.r().raw.has_ready():
                self._handle_ready(node, node.r().raw.ready())
                rounds += 1
                if node.retired and node.run is not None:
                    # EtcdServer fails with MemberRemoved once it applies its own removal.
                    self._crash(node, "applied its own removal: stops")

    def _crash_at(self, rd: Ready) -> CrashAt:
        p = self.profile.crash_in_ready
        if self._in_liveness or not p or (rd.hard_state is None and not rd.entries
                                          and not rd.committed_entries):
            return CrashAt.NONE
        if self.rng.random() >= p * 3:
            return CrashAt.NONE
        return self.rng.choice((CrashAt.AFTER_SEND, CrashAt.AFTER_SAVE, CrashAt.AFTER_APPLY))

    def _handle_ready(self, node: ServerNode, rd: Ready) -> None:
        run = node.r()
        if rd.soft_state is not None:
            was_leader = node.state == StateType.LEADER
            node.state, node.lead = rd.soft_state.raft_state, rd.soft_state.lead
            if node.state == StateType.LEADER and not was_leader:
                self._on_leader(node)
                run.lessor.promote(ELECTION_TICK * TICK_SECONDS)  # EtcdServer.on_soft_state
            elif node.state != StateType.LEADER and was_leader:
                run.lessor.demote()
        crash = self._crash_at(rd)
        for m in rd.messages:
            self._send(node, m)
        if crash is CrashAt.AFTER_SEND:
            self._crash(node, "killed before saving a Ready")
            return self._maybe_quick_restart(node)
        node.persist(rd)
        if crash is CrashAt.AFTER_SAVE:
            self._crash(node, "killed after saving, before sending")
            return self._maybe_quick_restart(node)
        for m in rd.persisted_messages:
            self._send(node, m)
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            node.restore(rd.snapshot)
            md = rd.snapshot.metadata
            self._installs += 1
            self.applies.restore(node.id, md.index)
            st = node.node_state()
            if st.applied != md.index:
                raise ServerViolation(
                    ServerInvariant.STATE_AGREEMENT,
                    f"node {node.id} installed snapshot {md.term}/{md.index} but its state is "
                    f"at applied index {st.applied}",
                )
            self.agreement.observe(node.id, st)
            self._event(f"node {node.id} installs snapshot {md.term}/{md.index}, rev "
                        f"{st.revision}")
        if rd.committed_entries:
            self._apply(node, rd.committed_entries, run.raw.status().hard_state.term)
        node.between_readies()
        if crash is CrashAt.AFTER_APPLY:
            self._crash(node, "killed after applying, before advance")
            return self._maybe_quick_restart(node)
        for rs in rd.read_states:
            self.reads.on_read_state(node.id, rs.request_ctx, rs.index)
        applied = node.applied() if self.bug != "read-before-apply" else 1 << 62
        self.reads.serve(node.id, applied, node.range_latest)
        run.raw.advance()
        return None

    def _maybe_quick_restart(self, node: ServerNode) -> None:
        if self.rng.random() < self.profile.quick_restart:
            self._restart(node)

    def _on_leader(self, node: ServerNode) -> None:
        term = node.term()
        self._leaders += 1
        self._event(f"node {node.id} becomes leader of term {term}")
        self.elections.on_leader(node.id, term)
        self.members.on_leader(node.id, node.r().raw.conf_state().voters)
        st = node.r().raft_log
        self.log.check_leader(node.id, term, st.first_index(), st.last_index(), st.term)

    def _apply(self, node: ServerNode, entries: tuple[Entry, ...] | list[Entry],
               term: int) -> None:
        for e in entries:
            self.applies.on_apply(node.id, e, term)
        index_of: dict[int, int] = {}
        for e in entries:
            if e.type == EntryType.NORMAL and e.data:
                index_of[internalpb.InternalRequest.FromString(e.data).id] = e.index
            elif e.type == EntryType.CONF_CHANGE:
                ctx = decode_context(ConfChange.decode(e.data).context)
                if ctx is not None:
                    index_of[ctx.id] = e.index
        rev_before = node.r().store.current_rev
        result = node.apply(entries)
        check_revision_steps(node.id, rev_before, result.revision, result.results)
        if node.id in node.r().membership.removed and not node.retired:
            node.retired = True
            self.members.on_removed(node.id)
            self._event(f"node {node.id} applied its own removal")
        self.agreement.observe(node.id, node.node_state())
        pending = self._pending[node.id]
        for request_id, response in result.results:
            op = pending.pop(request_id, None)
            if op is not None:
                self._acknowledge(node, op, index_of[request_id], response)
        if self._marker is not None and not self._marker[1] and self._marker[0] in index_of:
            self._marker = (self._marker[0], index_of[self._marker[0]])

    def _acknowledge(self, node: ServerNode, op: ClientOp, index: int, response: Any) -> None:
        if isinstance(response, EtcdError):
            self._event(f"node {node.id} answers {op.kind} {op.key!r}: {type(response).__name__}")
            return
        rev = response.header.revision if hasattr(response, "header") else 0
        acked: Acked | None = None
        if op.kind == "put" or (op.kind == "txn" and response.succeeded):
            acked = Acked(index, rev, op.key, op.value)
        elif op.kind == "delete" and response.deleted:
            acked = Acked(index, rev, op.key, None)
        elif op.kind == "conf":
            self._confs += 1
        elif op.kind == "grant":
            self._leases.append(response.ID)
            del self._leases[:-8]
        if acked is not None and len(self.acked.all) < MAX_ACKED:
            self.acked.ack(acked)
        self._event(f"node {node.id} answers {op.kind} {op.key!r} at index {index} rev {rev}")

    # --- the network --------------------------------------------------------------------

    def _send(self, node: ServerNode, m: Message) -> None:
        if m.type == MessageType.SNAP:
            m = self._merge_snapshot(node, m)
            self._snap_reports[(m.from_, m.to)] = self.now + self.profile.net.long_delay_max + 5
        self.net.send(m, self.now)

    def _merge_snapshot(self, node: ServerNode, m: Message) -> Message:
        """EtcdServer.merge_snapshot plus the image the peer transport streams with it: the
        image is copied now and travels (by number, in Snapshot.data) with the message."""
        meta = node.merged_snapshot_meta()
        self._img_seq += 1
        path = self.root / "net" / f"img-{self._img_seq}.mdb"
        write_state_snapshot(node.r().envs.state, path)
        self._images[self._img_seq] = path
        for old in sorted(self._images)[:-MAX_IMAGES]:
            self._images.pop(old).unlink(missing_ok=True)
        self._event(f"node {node.id} sends snapshot {meta.term}/{meta.index} to {m.to}")
        return dataclasses.replace(
            m, snapshot=Snapshot(data=f"img:{self._img_seq}".encode(), metadata=meta))

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None or node.run is None:
            sender = self.nodes.get(m.from_)
            if sender is not None and sender.run is not None:
                sender.r().raw.report_unreachable(m.to)
            return
        if m.from_ in node.r().membership.removed:
            return  # etcd's transport refuses removed members' messages
        self._event("deliver " + describe(m))
        if m.type == MessageType.SNAP:
            assert m.snapshot is not None
            image = self._images.get(int(m.snapshot.data.decode().split(":")[1]))
            if image is None:
                return  # its stream broke: the sender's report deadline fails it
            node.receive_snapshot_image(m, image)
            if self._snap_reports.pop((m.from_, m.to), None):
                sender = self.nodes[m.from_]
                if sender.run is not None:
                    sender.r().raw.report_snapshot(m.to, failed=False)
        try:
            node.r().raw.step(m)
        except RaftError as err:
            self._event(f"node {node.id} refuses {m.type.name}: {type(err).__name__}")

    def _advance(self) -> None:
        m = self.net.pop_due(self.now)
        if m is None:
            self._tick()
        else:
            self._deliver(m)

    def _tick(self) -> None:
        self.now += 1
        skip = 0.0 if self._in_liveness else self.profile.tick_skip
        for nid in sorted(self.nodes):
            node = self.nodes[nid]
            if node.run is not None and not (skip and self.rng.random() < skip):
                node.r().raw.tick()
        self.reads.expire(self.now, 5 * ELECTION_TICK)
        self._expire_leases()
        for key in [k for k, d in self._snap_reports.items() if d <= self.now]:
            del self._snap_reports[key]
            sender = self.nodes[key[0]]
            if sender.run is not None:
                sender.r().raw.report_snapshot(key[1], failed=True)

    def _expire_leases(self) -> None:
        """EtcdServer._lease_expiry_loop: the leader proposes a revoke per expired lease."""
        leader = self._leader()
        if leader is None:
            return
        for lid in leader.r().lessor.expired(MAX_EXPIRED_PER_TICK):
            self._req_seq += 1
            req = internalpb.InternalRequest(id=self._req_seq,
                                             lease_revoke=pb.LeaseRevokeRequest(ID=lid))
            self._propose_request(leader, req, ClientOp("expire", str(lid).encode()))

    # --- clients ---------------------------------------------------------------------------

    def _alive(self) -> list[ServerNode]:
        return [n for n in self.nodes.values() if n.alive and not n.retired]

    def _leader(self) -> ServerNode | None:
        best: ServerNode | None = None
        for n in self._alive():
            if n.state == StateType.LEADER and (best is None or n.term() > best.term()):
                best = n
        return best

    def _pick_target(self) -> ServerNode | None:
        alive = self._alive()
        if not alive:
            return None
        leader = self._leader()
        if leader is not None and self.rng.random() < 0.5:
            return leader
        return self.rng.choice(alive)

    def _request(self) -> tuple[internalpb.InternalRequest, ClientOp]:
        self._req_seq += 1
        rid = self._req_seq
        key = f"k{self.rng.randrange(KEYS)}".encode()
        value = f"v{rid}".encode()
        roll = self.rng.random()
        if roll < 0.45:
            lease = self.rng.choice(self._leases) if self._leases and roll < 0.1 else 0
            req = internalpb.InternalRequest(
                id=rid, put=pb.PutRequest(key=key, value=value, lease=lease))
            return req, ClientOp("put", key, value)
        if roll < 0.6:
            return (internalpb.InternalRequest(id=rid, delete_range=pb.DeleteRangeRequest(key=key)),
                    ClientOp("delete", key))
        if roll < 0.85:
            # Put only if the key was not modified since a revision the client saw.
            seen = self.acked.last_by_key.get(key)
            cmp = pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.LESS,
                             mod_revision=(seen.revision if seen else 0) + 1)
            t = pb.TxnRequest(
                compare=[cmp],
                success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
                failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
            )
            return internalpb.InternalRequest(id=rid, txn=t), ClientOp("txn", key, value)
        if roll < 0.93 or not self._leases:
            grant = pb.LeaseGrantRequest(ID=1000 + rid, TTL=self.rng.choice((2, 5, 60)))
            return internalpb.InternalRequest(id=rid, lease_grant=grant), ClientOp("grant", b"")
        lid = self.rng.choice(self._leases)
        return (internalpb.InternalRequest(id=rid, lease_revoke=pb.LeaseRevokeRequest(ID=lid)),
                ClientOp("revoke", b""))

    def _propose_request(self, node: ServerNode, req: internalpb.InternalRequest,
                         op: ClientOp) -> None:
        try:
            node.r().raw.propose(req.SerializeToString())
        except ProposalDropped:
            self._event(f"client -> {node.id}: {op.kind} {op.key!r} dropped")
            return
        self._pending[node.id][req.id] = op
        self._event(f"client -> {node.id}: {op.kind} {op.key!r} {op.value!r} #{req.id}")

    def _propose(self) -> None:
        node = self._pick_target()
        if node is not None:
            req, op = self._request()
            self._propose_request(node, req, op)

    def _compact(self) -> None:
        node = self._pick_target()
        if node is None:
            return
        store = node.r().store
        rev = self.rng.randint(max(1, store.current_rev - 6), max(1, store.current_rev))
        self._req_seq += 1
        req = internalpb.InternalRequest(id=self._req_seq,
                                         compaction=pb.CompactionRequest(revision=rev))
        self._propose_request(node, req, ClientOp("compact", str(rev).encode()))

    def _read(self) -> None:
        node = self._pick_target()
        if node is None or not self.reads.can_issue():
            return
        self._read_seq += 1
        ctx = f"r{self._read_seq}".encode()
        key = f"k{self.rng.randrange(KEYS)}".encode()
        self.reads.issue(ctx, node.id, key, self.now)
        self._event(f"client -> {node.id}: read {key!r} ctx {ctx!r}")
        try:
            node.r().raw.read_index(ctx)
        except RaftError as err:
            self._event(f"read {ctx!r} refused: {type(err).__name__}")

    # --- faults ----------------------------------------------------------------------------

    def _crash_event(self) -> None:
        alive = self._alive()
        if len(alive) > 1:
            leader = self._leader()
            node = leader if leader and self.rng.random() < 0.5 else self.rng.choice(alive)
            self._crash(node, "crash event")
            self._maybe_quick_restart(node)

    def _restart_event(self) -> None:
        down = [n for n in self.nodes.values() if not n.alive and not n.retired]
        if down:
            self._restart(self.rng.choice(down))

    def _partition_event(self) -> None:
        ids = sorted(self.nodes)
        leader = self._leader()
        kind = self.rng.randrange(3)
        if kind == 0 and leader is not None:
            self.net.isolate(leader.id, ids)
            self._event(f"partition: isolate leader {leader.id}")
        elif kind == 1:
            shuffled = ids[:]
            self.rng.shuffle(shuffled)
            k = self.rng.randint(1, max(1, len(ids) // 2))
            self.net.partition(shuffled[:k], shuffled[k:])
            self._event(f"partition: {sorted(shuffled[:k])} | {sorted(shuffled[k:])}")
        else:
            victim = self.rng.choice(ids)
            others = [i for i in ids if i != victim]
            self.net.partition_one_way([victim], others)
            self._event(f"partition: {victim} cannot send")

    def _transfer_event(self) -> None:
        leader = self._leader()
        if leader is None:
            return
        others = [v for v in leader.r().raw.conf_state().voters if v != leader.id]
        if others:
            to = self.rng.choice(others)
            leader.r().raw.transfer_leader(to)
            self._event(f"transfer leadership {leader.id} -> {to}")

    def _campaign_event(self) -> None:
        alive = [n for n in self._alive() if n.state != StateType.LEADER]
        for node in self.rng.sample(alive, min(len(alive), self.rng.randint(1, 2))):
            node.r().raw.campaign()
            self._event(f"node {node.id}'s election timer fires early")

    def _do(self, kind: EventKind) -> None:
        if kind == EventKind.ADVANCE:
            self._advance()
        elif kind == EventKind.PROPOSE:
            self._propose()
        elif kind == EventKind.READ:
            self._read()
        elif kind == EventKind.CRASH:
            self._crash_event()
        elif kind == EventKind.RESTART:
            self._restart_event()
        elif kind == EventKind.PARTITION:
            self._partition_event()
        elif kind == EventKind.HEAL:
            if self.net.partitioned:
                self.net.heal()
                self._event("heal all partitions")
        elif kind == EventKind.TRANSFER:
            self._transfer_event()
        elif kind == EventKind.CAMPAIGN:
            self._campaign_event()
        elif kind == EventKind.COMPACT:
            self._compact()
        else:
            self._conf_event(kind)

    # --- liveness and the final checks ------------------------------------------------------

    def _check_liveness(self) -> None:
        """Heal, restart everyone; a fresh write must reach every member in bounded time,
        then every member must hold every acknowledged write."""
        self._in_liveness = True
        saved = self.net.faults
        self.net.faults = CALM
        self.net.heal()
        for node in self.nodes.values():
            if not node.alive and not node.retired:
                self._restart(node)
        self._event("liveness: healed network, restarted every member")
        self._req_seq += 1
        marker = internalpb.InternalRequest(
            id=self._req_seq, put=pb.PutRequest(key=b"live", value=f"m{self.step_no}".encode()))
        self._marker = (marker.id, 0)
        start, next_propose, loops = self.now, self.now, 0
        while True:
            loops += 1
            idx = self._marker[1]
            # Writes acknowledged after the marker (proposed before the heal) must have
            # reached everyone too before the durability check below.
            if idx and all(n.applied() >= max(idx, self.acked.max_index)
                           for n in self._configured()):
                break
            if self.now - start > LIVENESS_BUDGET_TICKS or loops > LIVENESS_BUDGET_EVENTS:
                raise ServerViolation(
                    ServerInvariant.LIVENESS,
                    f"no progress within {self.now - start} ticks of healing "
                    f"(marker applied at {idx or 'never'})")
            if not idx and self.now >= next_propose:
                target = self._leader() or self._pick_target()
                if target is not None:
                    self._propose_request(target, marker, ClientOp("marker", b"live"))
                next_propose = self.now + ELECTION_TICK
            self._advance()
            self._process_all()
        configured = self._configured()
        for node in configured:
            st = node.node_state()
            self.acked.check_present(node.id, node.range_at, st.compact_revision, st.revision)
            if node.members_digest() != configured[0].members_digest():
                raise ServerViolation(
                    ServerInvariant.STATE_AGREEMENT,
                    f"member records differ: node {node.id} {node.members_digest()}, node "
                    f"{configured[0].id} {configured[0].members_digest()}")
        self._event(f"liveness: marker at {self._marker[1]} everywhere, "
                    f"{len(self.acked.all)} acknowledged writes present everywhere")
        self._marker = None
        self.net.faults = saved
        self._in_liveness = False

    def _configured(self) -> list[ServerNode]:
        """The members of the current leader's configuration (joiners whose addition never
        committed, and removed members, are not waited for)."""
        leader = self._leader()
        if leader is None:
            return [n for n in self.nodes.values() if n.alive and not n.retired]
        cs = leader.r().raw.conf_state()
        # A member that applied its own removal has stopped, even where the leader has not
        # applied that removal yet (a removed leader hands over that way).
        return [self.nodes[i] for i in sorted(cs.voters + cs.learners)
                if i in self.nodes and not self.nodes[i].retired]

    def _conf_event(self, kind: EventKind) -> None:
        """A member add / promote / remove, as EtcdServer._propose_conf_change sends it."""
        leader = self._leader()
        if leader is None:
            return
        conf = leader.r().raw.conf_state()
        change: ConfChange | None = None
        if kind in (EventKind.ADD_VOTER, EventKind.ADD_LEARNER):
            if len(self.nodes) >= MAX_NODES or len(conf.voters) >= MAX_VOTERS:
                return
            new_id = max(self.nodes) + 1
            member = Member(new_id, "", (f"sim://{new_id}",), (), kind == EventKind.ADD_LEARNER)
            known = [m for m in leader.r().membership.sorted() if m.id != new_id]
            node = ServerNode(new_id, self.root / f"m{new_id}", (), self.bug, [*known, member])
            self.nodes[new_id] = node
            self._start(node)
            typ = (ConfChangeType.ADD_LEARNER_NODE if member.is_learner
                   else ConfChangeType.ADD_NODE)
            change = ConfChange(typ, new_id, self._conf_context(member))
        elif kind == EventKind.PROMOTE and conf.learners:
            lid = self.rng.choice(conf.learners)
            m = leader.r().membership.members.get(lid, Member(lid))
            promoted = Member(m.id, m.name, m.peer_urls, m.client_urls, False)
            change = ConfChange(ConfChangeType.ADD_NODE, lid, self._conf_context(promoted))
        elif kind == EventKind.REMOVE:
            choices = list(conf.learners)
            if len(conf.voters) >= MIN_VOTERS_FOR_REMOVE:
                choices += list(conf.voters)
            if choices:
                rid = self.rng.choice(choices)
                m = leader.r().membership.members.get(rid, Member(rid))
                change = ConfChange(ConfChangeType.REMOVE_NODE, rid, self._conf_context(m))
        if change is None:
            return
        request_id = internalpb.ConfChangeContext.FromString(change.context).id
        try:
            leader.r().raw.propose_conf_change(change)
        except ProposalDropped:
            self._event(f"propose {change.type.name} {change.node_id} dropped")
            return
        self._pending[leader.id][request_id] = ClientOp("conf", str(change.node_id).encode())
        self._event(f"propose {change.type.name} {change.node_id} to leader {leader.id}")

    def _conf_context(self, member: Member) -> bytes:
        self._req_seq += 1
        return encode_context(to_pb(member), self._req_seq)

    def run(self) -> ServerRunResult:
        violation: Exception | None = None
        kinds = list(EventKind)
        with _scratch_dir() as root:
            self.root = root
            (root / "net").mkdir()
            voters = tuple(range(1, self.initial_nodes + 1))
            try:
                for i in voters:
                    self.nodes[i] = ServerNode(i, root / f"m{i}", voters, self.bug)
                    self._start(self.nodes[i])
                self._process_all()
                for step in range(1, self.steps + 1):
                    self.step_no = step
                    self._do(self.rng.choices(kinds, self.profile.weights)[0])
                    self._process_all()
                    if step == self.steps // 2:
                        self._check_liveness()
                self._check_liveness()
            except (Violation, ServerViolation) as v:
                violation = v
            except Exception as err:  # the server layer broke: report it like a violation
                tb = traceback.extract_tb(err.__traceback__)[-1]
                violation = RuntimeError(
                    f"CRASH: {type(err).__name__}: {err} at {tb.filename}:{tb.lineno}")
            finally:
                applied = max((n.applied() for n in self.nodes.values() if n.alive), default=0)
                revision = max((n.r().store.current_rev for n in self.nodes.values()
                                if n.alive), default=0)
                self._close_all()
        if violation is not None:
            self._event(f"VIOLATION {violation}")
        return ServerRunResult(
            seed=self.seed, nodes=self.initial_nodes, steps=self.steps, bug=self.bug,
            violation=violation,
            trace_tail=tuple(self.trace), trace_hash=self._hash.hexdigest(),
            stats=ServerRunStats(
                steps=self.step_no, ticks=self.now, applied=applied, revision=revision,
                leaders=self._leaders, acked_writes=len(self.acked.all),
                reads_served=self.reads.served, crashes=self._crashes,
                snapshots_installed=self._installs, conf_changes=self._confs,
                messages=self.net.stats().sent,
            ),
        )

"""The simulation driver: N RawNodes, a SimNetwork, one SimDisk each, clients, faults.

One seed drives everything (separate `random.Random` streams derived from it for the
event schedule, the network, power loss and each node's election jitter), so a run is a
pure function of (seed, nodes, steps, bug).  After every event the driver processes every
node's Ready following the contract in `etcdpy.raft`, and the checkers in checkers.py
watch every fact that goes by.

The application state machine (kv.py) is in memory only: a restarted node rebuilds it
from its durable snapshot and the core replays the committed entries after it
(RaftConfig.applied = the snapshot's index), as a real server without a durable
state machine would.  The set of peers a node knows to be removed is kept across
crashes (etcd keeps it in its backend); a node drops messages from removed peers, as
etcd's transport does, and a node that applied its own removal is never restarted.
"""

from __future__ import annotations

import hashlib
import random
import traceback
from collections import deque

from etcdpy.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ProposalDropped,
    RaftConfig,
    RaftError,
    RawNode,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
)

from .checkers import (
    ApplyOrder,
    CommitLog,
    ElectionSafety,
    Invariant,
    Membership,
    ReadChecker,
    Violation,
    check_leader_commit,
    check_snapshot,
)
from .disk import DiskImage, SimDisk
from .kv import KVStore, Put
from .network import CALM, SimNetwork
from .node import CrashPoint, SimNode, describe
from .profile import EventKind, FaultProfile, draw_profile
from .result import RunResult, RunStats

ELECTION_TICK = 10
HEARTBEAT_TICK = 1
MAX_READY_ROUNDS = 64  # per node per step; has_ready() staying true longer waits a step
MAX_NODES = 12  # ever created, including joiners whose conf change never committed
MAX_VOTERS = 7
MIN_VOTERS_FOR_REMOVE = 4  # remove a voter only from 4+, so 3 remain to ride out crashes
LIVENESS_BUDGET_TICKS = 60 * ELECTION_TICK
LIVENESS_BUDGET_EVENTS = 200 * LIVENESS_BUDGET_TICKS  # a livelock in zero virtual time
TRACE_TAIL = 60
BOOT_INDEX = BOOT_TERM = 1


class Simulation:
    def __init__(
        self,
        seed: int,
        nodes: int = 3,
        steps: int = 3000,
        verbose: bool = False,
        bug: str | None = None,
        commit_rule: bool = True,
    ) -> None:
        """commit_rule=False leaves out the COMMIT_RULE check, to measure how the end-to-end
        checks alone fare against the commit-old-term bug."""
        assert nodes >= 1 and steps >= 0
        self.seed = seed
        self.initial_nodes = nodes
        self.steps = steps
        self.verbose = verbose
        self.bug = bug
        self.commit_rule = commit_rule
        master = random.Random(seed)
        self.rng = random.Random(master.getrandbits(64))  # event schedule and clients
        self.profile: FaultProfile = draw_profile(random.Random(master.getrandbits(64)))
        self.net: SimNetwork[Message] = SimNetwork(
            random.Random(master.getrandbits(64)), self.profile.net, capacity=4000
        )
        self.power_rng = random.Random(master.getrandbits(64))
        self.node_seeds = random.Random(master.getrandbits(64))
        self.now = 0
        self.step_no = 0
        self.nodes: dict[int, SimNode] = {}
        self.log = CommitLog()
        self.elections = ElectionSafety()
        self.applies = ApplyOrder(self.log)
        self.reads = ReadChecker(self.log)
        self.members = Membership()
        self.trace: deque[str] = deque(maxlen=TRACE_TAIL)
        self._hash = hashlib.sha256()
        self._write_seq = 0
        self._read_seq = 0
        self._snap_reports: dict[tuple[int, int], int] = {}  # (leader, to) -> deadline tick
        self._liveness_markers: dict[bytes, int] = {}  # marker data -> committed index
        self._crashes = 0
        self._conf_applied = 0
        self._leaders = 0
        self._in_liveness = False
        self._doomed: dict[int, int] = {}  # node -> step at which the nemesis kills it
        # Bootstrap: every initial member starts from the same snapshot at 1/1 holding the
        # configuration (and an empty store).  A snapshot rather than MemoryStorage's
        # index-0 bootstrap, because a member added later must learn the initial voters
        # from somewhere: from this snapshot, which the leader sends it first.
        voters = tuple(range(1, nodes + 1))
        boot_kv = KVStore()
        boot_kv.skip(BOOT_INDEX)
        boot = Snapshot(
            data=boot_kv.encode(),
            metadata=SnapshotMetadata(
                conf_state=ConfState(voters=voters), index=BOOT_INDEX, term=BOOT_TERM
            ),
        )
        boot_entry = Entry(BOOT_TERM, BOOT_INDEX, EntryType.CONF_CHANGE, b"bootstrap")
        self.log.record(0, boot_entry, BOOT_TERM)
        boot_hs = HardState(term=BOOT_TERM, commit=BOOT_INDEX)
        for i in voters:
            node = SimNode(i, SimDisk(DiskImage(hard_state=boot_hs, snapshot=boot)))
            self.nodes[i] = node
            self._start(node)

    # --- trace ---------------------------------------------------------------

    def _event(self, text: str) -> None:
        line = f"#{self.step_no} t{self.now} {text}"
        self._hash.update(line.encode())
        self.trace.append(line)
        if self.verbose:
            print(line)

    # --- node lifecycle ----------------------------------------------------------

    def _start(self, node: SimNode) -> None:
        storage = node.disk.load_storage()
        snap = storage.snapshot()
        kv = KVStore.decode(snap.data)
        assert kv.applied == snap.metadata.index, (kv.applied, snap.metadata.index)
        cfg = RaftConfig(
            id=node.id,
            election_tick=ELECTION_TICK,
            heartbeat_tick=HEARTBEAT_TICK,
            applied=snap.metadata.index,
            max_size_per_msg=self.profile.max_msg_size,  # small: appends split, probes vary
            max_inflight_msgs=8,
            rng=random.Random(self.node_seeds.getrandbits(64)),
        )
        node.storage = storage
        node.raw = RawNode(cfg, storage)
        node.kv = kv
        node.conf = snap.metadata.conf_state
        node.state = StateType.FOLLOWER
        node.lead = 0
        node.commit_seen = snap.metadata.index
        node.last_hard_state = storage.hard_state()
        self.applies.restore(node.id, snap.metadata.index)

    def _crash(self, node: SimNode, why: str) -> None:
        kept = node.disk.crash(self.power_rng)
        node.raw = None
        node.storage = None
        self.reads.forget_node(node.id)
        self._crashes += 1
        self._event(f"crash {node.id} ({why}); {kept} unsynced writes survived")

    # --- the Ready loop ----------------------------------------------------------------

    def _process_all(self) -> None:
        for nid in sorted(self.nodes):
            node = self.nodes[nid]
            rounds = 0
            while node.raw is not None and rounds < MAX_READY_ROUNDS and node.raw.has_ready():
                self._handle_ready(node, node.raw.ready())
                rounds += 1

    def _handle_ready(self, node: SimNode, rd: Ready) -> None:
        raw, storage = node.raw, node.storage
        assert raw is not None and storage is not None
        became_leader = False
        if rd.soft_state is not None:
            if rd.soft_state.raft_state == StateType.LEADER and node.state != StateType.LEADER:
                became_leader = True
            node.state, node.lead = rd.soft_state.raft_state, rd.soft_state.lead
        # (1) persist: snapshot, then entries, then hard state, as one disk record.
        snap = rd.snapshot if rd.snapshot is not None and not rd.snapshot.is_empty() else None
        if snap is not None:
            self._install_snapshot(node, snap)
        if rd.entries:
            self.log.check_overwrite(node.id, rd.entries[0].index, node.commit_seen)
            storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        node.disk.write_ready(snap, rd.entries, rd.hard_state)
        crash = self._crash_point(node, rd, became_leader)
        hs = rd.hard_state
        leading = node.state == StateType.LEADER
        if (
            self.commit_rule
            and hs is not None
            and leading
            and hs.commit > node.last_hard_state.commit
        ):
            check_leader_commit(node.id, hs.term, hs.commit, storage.term(hs.commit))
        if rd.hard_state is not None:
            node.last_hard_state = rd.hard_state
            self._record_commits(node, rd.hard_state.commit)
        if became_leader:  # it won its election, whatever happens to it next
            self._on_leader(node)
            if not self._in_liveness and self.rng.random() < self.profile.kill_new_leader:
                # Jepsen's "kill the primary" nemesis: leader churn with half-replicated
                # logs is what the Figure 8 scenario is made of.
                self._doomed[node.id] = self.step_no + self.rng.randint(0, 10)
        if crash is CrashPoint.BEFORE_SEND:
            if rd.must_sync:
                node.disk.sync()
            self._crash(node, "power loss after fsync, before sending")
            self._maybe_quick_restart(node)
            return
        # `messages` may leave before the persist is durable ...
        for m in rd.messages:
            self._send(node.id, m)
        if crash is CrashPoint.BEFORE_SYNC:
            self._crash(node, "power loss before fsync")
            self._maybe_quick_restart(node)
            return
        if rd.must_sync:
            node.disk.sync()
        # ... `persisted_messages` only after it.
        for m in rd.persisted_messages:
            self._send(node.id, m)
        # (3) apply.
        for e in rd.committed_entries:
            self._apply(node, e)
            if node.raw is None:
                return
        for rs in rd.read_states:
            self.reads.on_read_state(node.id, rs.request_ctx, rs.index)
        self.reads.serve_ready(node.id, node.kv.applied, node.kv.data)
        # (4)
        raw.advance()

    def _crash_point(self, node: SimNode, rd: Ready, became_leader: bool) -> CrashPoint:
        """Whether (and where) power fails while this Ready is being handled.

        Delicate moments are 20 times likelier to be hit (FoundationDB's "buggify" aims at
        such spots): a change of term or vote, winning an election, and a new leader's
        first commit.  Both orders the contract allows are tried: messages sent before
        the fsync, and the fsync done but nothing sent yet."""
        p = self.profile.crash_in_ready
        if became_leader:
            node.awaiting_first_commit = True
        if self._in_liveness or (rd.hard_state is None and not rd.entries):
            return CrashPoint.NONE
        if (
            rd.entries
            and node.state == StateType.LEADER
            and self.profile.leader_append_crash
            and self.rng.random() < self.profile.leader_append_crash
        ):
            # The leader's new entries reach its disk and nobody else's: the divergent,
            # unreplicated suffixes of the Figure 8 scenario.
            return CrashPoint.BEFORE_SEND
        if not p:
            return CrashPoint.NONE
        hs, last = rd.hard_state, node.last_hard_state
        delicate = became_leader
        if hs is not None:
            delicate = delicate or (hs.term, hs.vote) != (last.term, last.vote)
            if node.awaiting_first_commit and hs.commit > last.commit:
                node.awaiting_first_commit = False
                delicate = delicate or node.state == StateType.LEADER
        if delicate:
            p = min(0.5, p * 20)
        if self.rng.random() >= p:
            return CrashPoint.NONE
        return self.rng.choice((CrashPoint.BEFORE_SYNC, CrashPoint.BEFORE_SEND))

    def _maybe_quick_restart(self, node: SimNode) -> None:
        if not node.retired and self.rng.random() < self.profile.quick_restart:
            self._restart(node)

    def _install_snapshot(self, node: SimNode, snap: Snapshot) -> None:
        md = snap.metadata
        check_snapshot(self.log, node.id, md.index, md.term, snap.data)
        assert node.storage is not None
        node.storage.apply_snapshot(snap)
        node.kv = KVStore.decode(snap.data)
        node.conf = md.conf_state
        node.commit_seen = max(node.commit_seen, md.index)
        self.applies.restore(node.id, md.index)
        self._event(f"node {node.id} installs snapshot {md.term}/{md.index} {md.conf_state}")

    def _record_commits(self, node: SimNode, commit: int) -> None:
        """Everything up to commit is committed: record it (or compare it) globally."""
        assert node.storage is not None
        st = node.storage
        lo = max(node.commit_seen + 1, st.first_index())
        if commit > st.last_index():
            raise Violation(
                Invariant.COMMITTED_CHANGED,
                f"node {node.id} commit {commit} is beyond its last index {st.last_index()}",
            )
        if lo <= commit:
            for e in st.entries(lo, commit + 1):
                self.log.record(node.id, e, node.last_hard_state.term)
        node.commit_seen = max(node.commit_seen, commit)

    def _on_leader(self, node: SimNode) -> None:
        assert node.raw is not None and node.storage is not None
        term = node.raw.status().hard_state.term
        self._leaders += 1
        self._event(f"node {node.id} becomes leader of term {term}")
        self.elections.on_leader(node.id, term)
        self.members.on_leader(node.id, node.conf.voters)
        st = node.storage
        self.log.check_leader(node.id, term, st.first_index(), st.last_index(), st.term)

    def _apply(self, node: SimNode, e: Entry) -> None:
        assert node.raw is not None
        self.applies.on_apply(node.id, e, node.last_hard_state.term)
        if e.type == EntryType.CONF_CHANGE:
            cc = ConfChange.decode(e.data)
            node.kv.skip(e.index)
            node.conf = node.raw.apply_conf_change(cc)
            self._conf_applied += 1
            self._event(
                f"node {node.id} applies {e.index} {cc.type.name} {cc.node_id} -> {node.conf}"
            )
            if cc.type == ConfChangeType.REMOVE_NODE:
                node.removed_peers.add(cc.node_id)
                if cc.node_id == node.id:
                    node.retired = True
                    self.members.on_removed(node.id)
        else:
            node.kv.apply(e.index, e.data)
            if e.data in self._liveness_markers and not self._liveness_markers[e.data]:
                self._liveness_markers[e.data] = e.index

    def _send(self, sender: int, m: Message) -> None:
        if m.to == m.from_:
            raise Violation(Invariant.READY_CONTRACT, f"node {sender}'s Ready holds {m}")
        if m.type == MessageType.SNAP:
            self._snap_reports[(m.from_, m.to)] = self.now + self.profile.net.long_delay_max + 5
            assert m.snapshot is not None
            cs = m.snapshot.metadata.conf_state
            if m.to not in cs.voters + cs.learners:
                # The snapshot predates the member it is for, which will ignore it.  A real
                # server snapshots often enough that this passes; here the sender makes a
                # fresh one, which the core sends once this one is reported.
                self._snapshot_node(self.nodes[m.from_], keep_entries=0)
        self.net.send(m, self.now)

    # --- events ----------------------------------------------------------------------

    def _alive(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def _leader(self) -> SimNode | None:
        """The live leader with the highest term, if any."""
        best: SimNode | None = None
        best_term = -1
        for n in self._alive():
            if n.state == StateType.LEADER:
                assert n.raw is not None
                t = n.raw.status().hard_state.term
                if t > best_term:
                    best, best_term = n, t
        return best

    def _advance(self) -> None:
        m = self.net.pop_due(self.now)
        if m is None:
            self._tick()
            return
        self._deliver(m)

    def _tick(self) -> None:
        self.now += 1
        skip = 0.0 if self._in_liveness else self.profile.tick_skip
        for nid in sorted(self.nodes):
            node = self.nodes[nid]
            if node.raw is not None and not (skip and self.rng.random() < skip):
                node.raw.tick()
        self.reads.expire(self.now, 5 * ELECTION_TICK)
        for key in [k for k, d in self._snap_reports.items() if d <= self.now]:
            del self._snap_reports[key]
            sender = self.nodes[key[0]]
            if sender.raw is not None:
                sender.raw.report_snapshot(key[1], failed=True)
                self._event(f"snapshot {key[0]}->{key[1]} reported failed")

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None or node.raw is None:
            sender = self.nodes.get(m.from_)
            if sender is not None and sender.raw is not None:
                sender.raw.report_unreachable(m.to)
            return
        if m.from_ in node.removed_peers:
            return
        self._event("deliver " + describe(m))
        if m.type == MessageType.SNAP and self._snap_reports.pop((m.from_, m.to), None):
            sender = self.nodes[m.from_]
            if sender.raw is not None:
                sender.raw.report_snapshot(m.to, failed=False)
        try:
            node.raw.step(m)
        except RaftError as err:
            self._event(f"node {node.id} refuses {m.type.name}: {type(err).__name__}")

    def _pick_target(self) -> SimNode | None:
        alive = [n for n in self._alive() if not n.retired]
        if not alive:
            return None
        leader = self._leader()
        if leader is not None and self.rng.random() < 0.5:
            return leader
        return self.rng.choice(alive)

    def _propose(self) -> None:
        node = self._pick_target()
        if node is None:
            return
        assert node.raw is not None
        self._write_seq += 1
        put = Put(f"k{self.rng.randrange(5)}", f"v{self._write_seq}")
        try:
            node.raw.propose(put.encode())
            self._event(f"client -> {node.id}: {put.key}={put.value}")
        except ProposalDropped:
            self._event(f"client -> {node.id}: {put.key}={put.value} dropped")

    def _read(self) -> None:
        node = self._pick_target()
        if node is None or not self.reads.can_issue():
            return
        assert node.raw is not None
        self._read_seq += 1
        ctx = f"r{self._read_seq}".encode()
        key = f"k{self.rng.randrange(5)}"
        self.reads.issue(ctx, node.id, key, self.now)
        self._event(f"client -> {node.id}: read {key} ctx {ctx!r}")
        try:
            node.raw.read_index(ctx)
        except RaftError as err:
            self._event(f"read {ctx!r} refused: {type(err).__name__}")

    def _crash_event(self) -> None:
        alive = self._alive()
        # Keep the run interesting: never take down the last live member.
        if len(alive) > 1:
            # Half the crashes hit the leader: its failures are the ones that matter most.
            leader = self._leader()
            node = leader if leader and self.rng.random() < 0.5 else self.rng.choice(alive)
            self._crash(node, "crash event")
            self._maybe_quick_restart(node)

    def _kill_doomed(self) -> None:
        for nid in [n for n, at in self._doomed.items() if at <= self.step_no]:
            del self._doomed[nid]
            node = self.nodes[nid]
            if node.alive and node.state == StateType.LEADER:
                self._crash(node, "nemesis kills the new leader")
                self._maybe_quick_restart(node)
                self._process_all()

    def _restart_event(self) -> None:
        down = [n for n in self.nodes.values() if not n.alive and not n.retired]
        if down:
            self._restart(self.rng.choice(down))

    def _restart(self, node: SimNode) -> None:
        node.restarts += 1
        self._start(node)
        self._event(
            f"restart {node.id} from disk: {node.disk.durable.hard_state}, "
            f"last index {node.disk.durable.last_index()}"
        )

    def _campaign_event(self) -> None:
        """One or two nodes' election timers fire early (a clock jump): two at once make
        the split votes and competing candidates of one term that randomized timeouts
        make rare."""
        alive = [n for n in self._alive() if not n.retired and n.state != StateType.LEADER]
        for node in self.rng.sample(alive, min(len(alive), self.rng.randint(1, 2))):
            assert node.raw is not None
            node.raw.campaign()
            self._event(f"node {node.id}'s election timer fires early")

    def _partition_event(self) -> None:
        ids = sorted(self.nodes)
        kind = self.rng.randrange(4)
        leader = self._leader()
        if kind == 0 and leader is not None:
            self.net.isolate(leader.id, ids)
            self._event(f"partition: isolate leader {leader.id}")
        elif kind == 1:
            shuffled = ids[:]
            self.rng.shuffle(shuffled)
            k = self.rng.randint(1, max(1, len(ids) // 2))
            self.net.partition(shuffled[:k], shuffled[k:])
            self._event(f"partition: {sorted(shuffled[:k])} | {sorted(shuffled[k:])}")
        elif kind == 2:
            victim = self.rng.choice(ids)
            others = [i for i in ids if i != victim]
            if self.rng.random() < 0.5:
                self.net.partition_one_way([victim], others)
                self._event(f"partition: {victim} cannot send")
            else:
                self.net.partition_one_way(others, [victim])
                self._event(f"partition: {victim} cannot receive")
        else:
            a, b = self.rng.sample(ids, 2) if len(ids) > 1 else (ids[0], ids[0])
            self.net.cut(a, b)
            self._event(f"partition: cut {a} <-> {b}")

    def _conf_event(self, kind: EventKind) -> None:
        leader = self._leader()
        if leader is None:
            return
        assert leader.raw is not None
        conf = leader.conf
        cc: ConfChange | None = None
        if kind in (EventKind.ADD_VOTER, EventKind.ADD_LEARNER):
            if len(self.nodes) >= MAX_NODES or len(conf.voters) >= MAX_VOTERS:
                return
            new_id = max(self.nodes) + 1
            node = SimNode(new_id, SimDisk())
            self.nodes[new_id] = node
            self._start(node)
            typ = (
                ConfChangeType.ADD_NODE
                if kind == EventKind.ADD_VOTER
                else ConfChangeType.ADD_LEARNER_NODE
            )
            cc = ConfChange(typ, new_id)
        elif kind == EventKind.PROMOTE and conf.learners:
            cc = ConfChange(ConfChangeType.ADD_NODE, self.rng.choice(conf.learners))
        elif kind == EventKind.REMOVE:
            choices = list(conf.learners)
            if len(conf.voters) >= MIN_VOTERS_FOR_REMOVE:
                choices += list(conf.voters)
            if choices:
                cc = ConfChange(ConfChangeType.REMOVE_NODE, self.rng.choice(choices))
        if cc is None:
            return
        try:
            leader.raw.propose_conf_change(cc)
            self._event(f"propose {cc.type.name} {cc.node_id} to leader {leader.id}")
        except ProposalDropped:
            self._event(f"propose {cc.type.name} {cc.node_id} dropped")

    def _transfer_event(self) -> None:
        leader = self._leader()
        if leader is None:
            return
        others = [v for v in leader.conf.voters if v != leader.id]
        if others:
            to = self.rng.choice(others)
            assert leader.raw is not None
            leader.raw.transfer_leader(to)
            self._event(f"transfer leadership {leader.id} -> {to}")

    def _compact_event(self) -> None:
        alive = self._alive()
        if alive:
            self._snapshot_node(self.rng.choice(alive), keep_entries=self.rng.randint(0, 8))

    def _snapshot_node(self, node: SimNode, keep_entries: int) -> None:
        """Snapshot the node's state machine at its applied index and compact its log,
        keeping a few entries behind the snapshot for slow followers, as etcd does."""
        st = node.storage
        assert st is not None
        old = st.snapshot().metadata.index
        idx = node.kv.applied
        if idx <= old:
            return
        snap = st.create_snapshot(idx, node.conf, node.kv.encode())
        st.compact(max(old + 1, idx - keep_entries))
        node.disk.save_snapshot(snap)
        self._event(f"node {node.id} snapshots at {snap.metadata.term}/{idx}")

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
        elif kind in (
            EventKind.ADD_VOTER,
            EventKind.ADD_LEARNER,
            EventKind.PROMOTE,
            EventKind.REMOVE,
        ):
            self._conf_event(kind)
        elif kind == EventKind.TRANSFER:
            self._transfer_event()
        elif kind == EventKind.CAMPAIGN:
            self._campaign_event()
        else:
            self._compact_event()

    # --- liveness ----------------------------------------------------------------------

    def _check_liveness(self) -> None:
        """Heal everything, then a fresh write must commit and reach every member that the
        leader's configuration lists, within a bounded number of ticks."""
        self._in_liveness = True
        saved = self.net.faults
        self.net.faults = CALM
        self.net.heal()
        for node in self.nodes.values():
            if not node.alive and not node.retired:
                self._start(node)
        self._event("liveness: healed network, restarted every member")
        marker = Put("live", f"m{self.step_no}").encode()
        self._liveness_markers[marker] = 0
        start = self.now
        next_propose = self.now
        loops = 0
        while True:
            loops += 1
            idx = self._liveness_markers[marker]
            leader = self._leader()
            if idx and leader is not None:
                members = leader.conf.voters + leader.conf.learners
                if all(self.nodes[m].kv.applied >= idx for m in members if m in self.nodes):
                    break
            if self.now - start > LIVENESS_BUDGET_TICKS or loops > LIVENESS_BUDGET_EVENTS:
                raise Violation(
                    Invariant.LIVENESS,
                    f"no progress within {self.now - start} ticks and {loops} events of healing "
                    f"(marker committed at {idx or 'never'})",
                )
            if not idx and self.now >= next_propose:
                target = leader or self._pick_target()
                if target is not None and target.raw is not None:
                    try:
                        target.raw.propose(marker)
                        self._event(f"liveness: propose marker to {target.id}")
                    except ProposalDropped:
                        pass
                next_propose = self.now + ELECTION_TICK
            self._advance()
            self._process_all()
        self._event(f"liveness: marker at {self._liveness_markers[marker]} everywhere")
        self.net.faults = saved
        self._in_liveness = False

    # --- the run -------------------------------------------------------------------------

    def run(self) -> RunResult:
        violation: Violation | None = None
        kinds = list(EventKind)
        weights = self.profile.weights
        try:
            self._process_all()
            for step in range(1, self.steps + 1):
                self.step_no = step
                self._do(self.rng.choices(kinds, weights)[0])
                self._process_all()
                self._kill_doomed()
                if self.step_no == self.steps // 2:
                    self._check_liveness()
            self._check_liveness()
        except Violation as v:
            violation = v
        except Exception as err:  # the core (or the harness) broke: report it like a violation
            tb = traceback.extract_tb(err.__traceback__)[-1]
            violation = Violation(
                Invariant.CORE_ERROR,
                f"{type(err).__name__}: {err} at {tb.filename}:{tb.lineno}",
            )
        if violation is not None:
            self._event(f"VIOLATION {violation}")
        return RunResult(
            seed=self.seed,
            nodes=self.initial_nodes,
            steps=self.steps,
            bug=self.bug,
            violation=violation,
            trace_tail=tuple(self.trace),
            trace_hash=self._hash.hexdigest(),
            stats=RunStats(
                steps=self.step_no,
                ticks=self.now,
                committed=self.log.max_index,
                leaders=self._leaders,
                reads_served=self.reads.served,
                crashes=self._crashes,
                conf_changes_applied=self._conf_applied,
                messages=self.net.stats().sent,
            ),
            commit_rule=self.commit_rule,
        )

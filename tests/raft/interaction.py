"""The interaction environment behind the scripts in testdata/ (after etcd's rafttest).

Commands (N, ID are node ids; nodes are numbered from 1 in creation order):
  add-nodes N [voters=(..)] [learners=(..)] [index=I] [prevote=bool] [checkquorum=bool]
            [max-inflight=K] [max-inflight-bytes=B] [max-size-per-msg=B]
            [max-uncommitted-size=B] [lease=bool] [disable-forwarding=bool]
      N new nodes.  With index=I their storage holds a snapshot at (I, term 1) with the
      given configuration; without voters they start empty (to join via snapshot).
  campaign ID | propose ID data | propose-conf-change ID v4|l4|r2 | read-index ID ctx
  transfer-leadership from=ID to=ID | report-unreachable ID peer | report-snapshot ID peer [failed]
  tick-heartbeat ID | tick-election ID | tick ID n | jitter ID n
  process-ready ID.. | deliver-msgs ID.. [drop=(ID..)] | stabilize [ID..]
  isolate ID | partition (ID ..) (ID ..) | recover | compact ID index | log-level none|info
  status ID | raft-log ID | raft-state
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from etcdpy.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    EntryType,
    MemoryStorage,
    Message,
    RaftConfig,
    RaftError,
    RawNode,
    Snapshot,
    SnapshotMetadata,
)
from etcdpy.raft.describe import (
    describe_entry,
    describe_message,
    describe_ready,
    describe_status,
    state_name,
)

from .datadriven import TestData

MAX_STABILIZE_ROUNDS = 1000
MAX_NODE_ID = 64  # isolate cuts links to every id up to this


class NoJitter(random.Random):
    """Makes every randomized election timeout exactly election_tick + `extra` (0 unless a
    script says `jitter ID n`), so that scripts stay short and deterministic."""

    extra = 0

    def randrange(self, *args: object, **kwargs: object) -> int:
        return self.extra


@dataclass
class EnvNode:
    node: RawNode
    storage: MemoryStorage
    config: RaftConfig


@dataclass
class Env:
    nodes: dict[int, EnvNode] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    cut: set[tuple[int, int]] = field(default_factory=set)  # (from, to) links that drop
    out: list[str] = field(default_factory=list)
    log_enabled: bool = True

    # --- plumbing ---------------------------------------------------------------

    def _logger(self, line: str) -> None:
        if self.log_enabled:
            self.out.append("INFO " + line)

    def handle(self, td: TestData) -> str:
        self.out = []
        fn: Callable[[TestData], None] | None = getattr(
            self, "cmd_" + td.cmd.replace("-", "_"), None
        )
        if fn is None:
            raise ValueError(f"{td.pos}: unknown command {td.cmd}")
        try:
            fn(td)
        except RaftError as e:
            self.out.append(f"raised: {type(e).__name__}: {e}")
        return "\n".join(self.out) if self.out else "ok"

    def _ids(self, td: TestData) -> list[int]:
        ids = [int(p) for p in td.positional() if p.isdigit()]
        return ids or sorted(self.nodes)

    def _n(self, td: TestData, i: int = 0) -> EnvNode:
        return self.nodes[int(td.positional()[i])]

    # --- node creation ------------------------------------------------------------

    def cmd_add_nodes(self, td: TestData) -> None:
        n = int(td.positional()[0])
        voters = [int(v) for v in td.get_list("voters")]
        learners = [int(v) for v in td.get_list("learners")]
        index = int(td.get("index", "0") or 0)

        def flag(name: str, default: bool) -> bool:
            v = td.get(name)
            return default if v is None else v == "true"

        for _ in range(n):
            nid = len(self.nodes) + 1
            storage = MemoryStorage()
            if voters or learners:
                cs = ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
                term = 1 if index > 0 else 0
                storage.apply_snapshot(
                    Snapshot(metadata=SnapshotMetadata(conf_state=cs, index=index, term=term))
                )
            cfg = RaftConfig(
                id=nid,
                election_tick=3,
                heartbeat_tick=1,
                applied=index,
                pre_vote=flag("prevote", False),
                check_quorum=flag("checkquorum", False),
                read_only_lease_based=flag("lease", False),
                disable_proposal_forwarding=flag("disable-forwarding", False),
                max_inflight_msgs=int(td.get("max-inflight", "256") or 256),
                max_inflight_bytes=int(td.get("max-inflight-bytes", "0") or 0),
                max_size_per_msg=int(td.get("max-size-per-msg", str(1 << 20)) or 0),
                max_uncommitted_entries_size=int(td.get("max-uncommitted-size", str(1 << 30)) or 0),
                rng=NoJitter(nid),
            )
            node = RawNode(cfg, storage, self._logger)
            self.nodes[nid] = EnvNode(node, storage, cfg)

    # --- inputs -------------------------------------------------------------------

    def cmd_campaign(self, td: TestData) -> None:
        self._n(td).node.campaign()

    def cmd_propose(self, td: TestData) -> None:
        self._n(td).node.propose(td.positional()[1].encode())

    def cmd_propose_conf_change(self, td: TestData) -> None:
        spec = td.positional()[1]
        kinds = {
            "v": ConfChangeType.ADD_NODE,
            "l": ConfChangeType.ADD_LEARNER_NODE,
            "r": ConfChangeType.REMOVE_NODE,
            "u": ConfChangeType.UPDATE_NODE,
        }
        self._n(td).node.propose_conf_change(ConfChange(kinds[spec[0]], int(spec[1:])))

    def cmd_read_index(self, td: TestData) -> None:
        self._n(td).node.read_index(td.positional()[1].encode())

    def cmd_transfer_leadership(self, td: TestData) -> None:
        frm = int(td.get("from") or 0)
        to = int(td.get("to") or 0)
        self.nodes[frm].node.transfer_leader(to)

    def cmd_report_unreachable(self, td: TestData) -> None:
        self._n(td).node.report_unreachable(int(td.positional()[1]))

    def cmd_report_snapshot(self, td: TestData) -> None:
        self._n(td).node.report_snapshot(int(td.positional()[1]), failed=td.has("failed"))

    def cmd_tick_heartbeat(self, td: TestData) -> None:
        n = self._n(td)
        for _ in range(n.config.heartbeat_tick):
            n.node.tick()

    def cmd_tick_election(self, td: TestData) -> None:
        n = self._n(td)
        for _ in range(n.config.election_tick):
            n.node.tick()

    def cmd_tick(self, td: TestData) -> None:
        n = self._n(td)
        for _ in range(int(td.positional()[1])):
            n.node.tick()

    def cmd_jitter(self, td: TestData) -> None:
        """jitter ID n: ID's randomized election timeout becomes election_tick + n."""
        n = self._n(td)
        extra = int(td.positional()[1])
        assert 0 <= extra < n.config.election_tick
        assert isinstance(n.config.rng, NoJitter)
        n.config.rng.extra = extra
        n.node.raft.randomized_election_timeout = n.config.election_tick + extra

    def cmd_isolate(self, td: TestData) -> None:
        i = int(td.positional()[0])
        for j in range(1, MAX_NODE_ID + 1):
            if j != i:
                self.cut |= {(i, j), (j, i)}

    def cmd_partition(self, td: TestData) -> None:
        """partition (1 2) (3 4 5): no traffic between the groups."""
        groups = [
            [int(x) for x in g.replace(",", " ").split()]
            for g in re.findall(r"\(([^)]*)\)", td.raw)
        ]
        for a, ga in enumerate(groups):
            for gb in groups[a + 1 :]:
                for i in ga:
                    for j in gb:
                        self.cut |= {(i, j), (j, i)}

    def cmd_recover(self, td: TestData) -> None:
        self.cut.clear()

    def cmd_log_level(self, td: TestData) -> None:
        self.log_enabled = td.positional()[0] != "none"

    def cmd_compact(self, td: TestData) -> None:
        n = self._n(td)
        idx = int(td.positional()[1])
        n.storage.compact(idx)
        self.cmd_raft_log(td)

    # --- the Ready loop and the message queue ---------------------------------------

    def _process_ready(self, nid: int) -> None:
        n = self.nodes[nid]
        rd = n.node.ready()
        self.out.append(f"Ready MustSync={str(rd.must_sync).lower()}:")
        self.out.extend(describe_ready(rd).split("\n"))
        if rd.snapshot is not None:
            n.storage.apply_snapshot(rd.snapshot)
        n.storage.append(rd.entries)
        if rd.hard_state is not None:
            n.storage.set_hard_state(rd.hard_state)
        self.messages.extend(rd.messages)
        self.messages.extend(rd.persisted_messages)
        cs: ConfState | None = None
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                cs = n.node.apply_conf_change(ConfChange.decode(e.data))
        if rd.committed_entries:
            # Keep a snapshot of the applied state at hand, as a real server would, so
            # that the leader can catch up a follower whose entries were compacted.
            last = rd.committed_entries[-1].index
            if last > n.storage.snapshot().metadata.index:
                n.storage.create_snapshot(last, cs, b"")
        n.node.advance()

    def cmd_process_ready(self, td: TestData) -> None:
        ids = self._ids(td)
        for nid in ids:
            if len(ids) > 1:
                self.out.append(f"> {nid} handling Ready")
            self._process_ready(nid)

    def _deliver(self, nid: int, drop: bool = False) -> int:
        mine = [m for m in self.messages if m.to == nid]
        self.messages = [m for m in self.messages if m.to != nid]
        for m in mine:
            cut = (m.from_, m.to) in self.cut
            if drop or cut:
                self.out.append("dropped: " + describe_message(m))
                continue
            self.out.append(describe_message(m))
            try:
                self.nodes[nid].node.step(m)
            except RaftError as e:
                self.out.append(f"raised: {type(e).__name__}: {e}")
        return len(mine)

    def cmd_deliver_msgs(self, td: TestData) -> None:
        for d in td.get_list("drop"):
            self._deliver(int(d), drop=True)
        ids = [int(p) for p in td.positional()]
        if not ids and not td.has("drop"):
            ids = sorted(self.nodes)
        for nid in ids:
            self._deliver(nid)

    def cmd_stabilize(self, td: TestData) -> None:
        ids = self._ids(td)
        for _ in range(MAX_STABILIZE_ROUNDS):
            done = True
            for nid in ids:
                if self.nodes[nid].node.has_ready():
                    done = False
                    self.out.append(f"> {nid} handling Ready")
                    start = len(self.out)
                    self._process_ready(nid)
                    self.out[start:] = ["  " + line for line in self.out[start:]]
            for nid in ids:
                if any(m.to == nid for m in self.messages):
                    done = False
                    self.out.append(f"> {nid} receiving messages")
                    start = len(self.out)
                    self._deliver(nid)
                    self.out[start:] = ["  " + line for line in self.out[start:]]
            if done:
                return
        raise AssertionError("stabilize did not converge")

    # --- inspection -----------------------------------------------------------------

    def cmd_status(self, td: TestData) -> None:
        self.out.extend(describe_status(self._n(td).node.status()).split("\n"))

    def cmd_raft_log(self, td: TestData) -> None:
        n = self._n(td)
        s = n.storage
        ents = s.entries(s.first_index(), s.last_index() + 1)
        if not ents:
            self.out.append(
                f"log is empty: first index={s.first_index()}, last index={s.last_index()}"
            )
        self.out.extend(describe_entry(e) for e in ents)

    def cmd_raft_state(self, td: TestData) -> None:
        for nid in sorted(self.nodes):
            r = self.nodes[nid].node.raft
            voter = ""
            if nid in r.trk.config.voters:
                voter = "(Voter)"
            elif nid in r.trk.config.learners:
                voter = "(Learner)"
            self.out.append(
                f"{nid}: {state_name(r.state)} {voter} Term:{r.term} Lead:{r.lead}".replace(
                    "  ", " "
                )
            )

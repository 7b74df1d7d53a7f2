"""A real multi-member etcdpy cluster on loopback for end-to-end tests (builds on harness.Member).

`Cluster` starts members from a static `--initial-cluster`, adds/joins/removes members the way an
operator does with etcdctl, and answers questions about the cluster (who leads, in which term)
from `etcdctl endpoint status`, i.e. from what the members themselves report. Every wait is
bounded by a deadline; `stop_all()` (called by the fixture's finally) stops every process that
was ever started, including removed and replaced ones.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.harness import Member, etcdctl, free_port

# Short timings so failover-based tests finish quickly; etcd accepts the same flags.
HEARTBEAT_MS = 50
ELECTION_MS = 500
FAST_TIMING = ["--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS)]
WAIT_S = 30.0

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = WAIT_S,
             interval_s: float = 0.05) -> T:
    """Poll `probe` until it returns something other than None (or False); bounded."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (AssertionError, grpc.RpcError, OSError, ValueError) as exc:
            last_error, value = exc, None
        if value is not None and value is not False:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}; last error: {last_error}")


def wait_serving(member: Member, timeout_s: float = WAIT_S) -> None:
    """Wait until `member` answers a linearizable read (so it knows a leader).

    Like Member.wait_serving, but a probe that outlives its own timeout (a member catching up
    can be slow to answer) is retried rather than fatal.
    """
    def probe() -> bool:
        assert member.proc is not None
        if member.proc.poll() is not None:
            raise RuntimeError(f"{member.name} exited with {member.proc.returncode}:\n"
                               f"{member.log_tail()}")
        try:
            r = etcdctl([member.endpoint], "get", "health-probe", timeout_s=6, check=False)
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0
    member.wait_listening(timeout_s)
    wait_for(f"{member.name} serving", probe, timeout_s, interval_s=0.1)


@dataclass(frozen=True, slots=True)
class Status:
    """One member's `etcdctl endpoint status` answer (fields as etcd names them)."""

    endpoint: str
    cluster_id: int
    member_id: int
    leader: int
    term: int
    raft_index: int
    is_learner: bool


@dataclass
class Cluster:
    """Members of one cluster; `members` holds the current ones, `retired` the removed ones."""

    base_dir: Path
    extra_args: list[str] = field(default_factory=list)
    kind: str = "etcdpy"  # or "etcd": the same scenario against real etcd 3.5, for reference
    members: list[Member] = field(default_factory=list)
    retired: list[Member] = field(default_factory=list)
    _next: int = 1

    # ---- building -------------------------------------------------------------------------
    def new_member(self, extra_args: Sequence[str] = ()) -> Member:
        name = f"m{self._next}"
        self._next += 1
        data = self.base_dir / f"{name}.data"
        return Member(self.kind, name, data, free_port(), free_port(),
                      [*self.extra_args, *extra_args])

    def initial_cluster(self, members: Sequence[Member] | None = None) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in (members or self.members))

    def bootstrap(self, size: int) -> None:
        """Start `size` members from one static --initial-cluster and wait for a leader."""
        self.members = [self.new_member() for _ in range(size)]
        spec = self.initial_cluster()
        for m in self.members:
            m.start(spec, "new")
        for m in self.members:
            wait_serving(m)

    def add(self, learner: bool = False, via: Member | None = None,
            extra_args: Sequence[str] = ()) -> Member:
        """`etcdctl member add` then start the new member with --initial-cluster-state existing."""
        m = self.new_member(extra_args)
        via = via or self.members[0]
        args = ["member", "add", m.name, f"--peer-urls={m.peer_url}"]
        if learner:
            args.append("--learner")
        # Like etcd, a voter is only added once every voter has been connected for 5 s
        # (--strict-reconfig-check answers 'unhealthy cluster' before that): retry.
        def attempt() -> str | None:
            r = etcdctl([via.endpoint], *args, check=False)
            if r.returncode == 0:
                return r.stdout
            assert "unhealthy cluster" in r.stderr, r.stderr
            return None

        out = wait_for("member add accepted", attempt, timeout_s=30.0, interval_s=0.5)
        # etcdctl prints the ETCD_INITIAL_CLUSTER the new member must use; take it verbatim.
        line = next(x for x in out.splitlines() if x.startswith("ETCD_INITIAL_CLUSTER="))
        spec = line.split("=", 1)[1].strip().strip('"')
        assert f"{m.name}={m.peer_url}" in spec, out
        m.start(spec, "existing")
        self.members.append(m)
        return m

    def remove(self, victim: Member, via: Member | None = None) -> None:
        """`etcdctl member remove`, retried while etcd's strict reconfig check answers
        'unhealthy cluster' (etcd wants the remaining voters connected for 5s first)."""
        via = via or next(m for m in self.members if m is not victim)
        victim_id = f"{self.member_id(victim):x}"

        def attempt() -> bool:
            r = etcdctl([via.endpoint], "member", "remove", victim_id, check=False)
            if r.returncode == 0:
                return True
            assert "etcdserver: unhealthy cluster" in r.stderr, r.stderr
            return False

        wait_for(f"removal of {victim.name}", attempt, interval_s=0.5)
        self.members.remove(victim)
        self.retired.append(victim)

    def stop_all(self) -> None:
        for m in [*self.members, *self.retired]:
            m.stop(timeout_s=5)

    # ---- asking ---------------------------------------------------------------------------
    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def running(self) -> list[Member]:
        return [m for m in self.members if m.proc is not None and m.proc.poll() is None]

    def status(self, member: Member) -> Status:
        out = etcdctl([member.endpoint], "endpoint", "status", "-w", "json", timeout_s=10).stdout
        (entry,) = json.loads(out)
        st = entry["Status"]
        return Status(
            endpoint=entry["Endpoint"],
            cluster_id=int(st["header"]["cluster_id"]),
            member_id=int(st["header"]["member_id"]),
            leader=int(st.get("leader", 0)),
            term=int(st.get("raftTerm", 0)),
            raft_index=int(st.get("raftIndex", 0)),
            is_learner=bool(st.get("isLearner", False)),
        )

    def member_id(self, member: Member) -> int:
        out = etcdctl([self.running()[0].endpoint], "member", "list", "-w", "json").stdout
        for entry in json.loads(out)["members"]:
            if member.peer_url in entry.get("peerURLs", []):
                return int(entry["ID"])
        raise AssertionError(f"{member.name} not in member list: {out}")

    def member_list(self, via: Member | None = None) -> list[dict[str, object]]:
        via = via or self.running()[0]
        out = etcdctl([via.endpoint], "member", "list", "-w", "json").stdout
        return list(json.loads(out)["members"])

    def entry(self, member: Member, via: Member | None = None) -> dict[str, object]:
        """`member`'s entry in the member list, found by peer URL (an unstarted member has no
        name yet)."""
        for e in self.member_list(via):
            if member.peer_url in e.get("peerURLs", []):  # type: ignore[operator]
                return e
        raise AssertionError(f"{member.name} ({member.peer_url}) not in the member list")

    def agreed_leader(self, among: Sequence[Member] | None = None) -> Member | None:
        """The member every running one names as leader in the same term, else None."""
        among = list(among or self.running())
        statuses = [self.status(m) for m in among]
        leaders = {s.leader for s in statuses}
        terms = {s.term for s in statuses}
        if len(leaders) != 1 or len(terms) != 1 or 0 in leaders:
            return None
        (lead,) = leaders
        for m, s in zip(among, statuses, strict=True):
            if s.member_id == lead:
                return m
        return None

    def wait_leader(self, among: Sequence[Member] | None = None,
                    timeout_s: float = WAIT_S) -> Member:
        return wait_for("one agreed leader", lambda: self.agreed_leader(among), timeout_s)

    def followers(self) -> list[Member]:
        lead = self.wait_leader()
        return [m for m in self.running() if m is not lead]

    def hashkv(self, members: Sequence[Member] | None = None) -> dict[str, int]:
        """`etcdctl endpoint hashkv` per member (hash at each member's latest revision)."""
        members = list(members or self.running())
        result: dict[str, int] = {}
        for m in members:
            out = etcdctl([m.endpoint], "endpoint", "hashkv", "-w", "json").stdout
            (entry,) = json.loads(out)
            result[m.name] = int(entry["HashKV"]["hash"])
        return result

    def hashkv_cluster(self) -> dict[str, int]:
        """`etcdctl endpoint hashkv --cluster`: every member the member list names, by URL."""
        out = etcdctl([self.running()[0].endpoint], "endpoint", "hashkv", "--cluster",
                      "-w", "json").stdout
        return {e["Endpoint"]: int(e["HashKV"]["hash"]) for e in json.loads(out)}

    def wait_same_hashkv(self, members: Sequence[Member] | None = None,
                         timeout_s: float = WAIT_S) -> int:
        """Wait until every member has applied the same revision and so hashes the same."""
        def probe() -> int | None:
            revs = {self.revision(m) for m in (members or self.running())}
            if len(revs) != 1:
                return None
            hashes = set(self.hashkv(members).values())
            if members is None:
                # Everyone is up: ask the way an operator does, through the member list too.
                by_url = self.hashkv_cluster()
                assert sorted(by_url) == sorted(m.client_url for m in self.members), by_url
                hashes |= set(by_url.values())
            return hashes.pop() if len(hashes) == 1 else None
        return wait_for("equal hashkv on every member", probe, timeout_s)

    def revision(self, member: Member) -> int:
        with grpc_kv(member) as kv:
            resp = kv.Range(rpc_pb2.RangeRequest(key=b"\0", serializable=True, limit=1),
                            timeout=5)
        return int(resp.header.revision)


@contextmanager
def grpc_kv(member: Member) -> Iterator[rpc_pb2_grpc.KVStub]:
    channel = grpc.insecure_channel(member.endpoint)
    try:
        yield rpc_pb2_grpc.KVStub(channel)
    finally:
        channel.close()


@contextmanager
def running_cluster(base_dir: Path, size: int, extra_args: Sequence[str] = (),
                    kind: str = "etcdpy") -> Iterator[Cluster]:
    """A bootstrapped cluster whose processes are all stopped on the way out, whatever happens."""
    cluster = Cluster(base_dir, list(extra_args), kind=kind)
    try:
        cluster.bootstrap(size)
        yield cluster
    finally:
        cluster.stop_all()


def grpc_status(member: Member, timeout_s: float = 1.0) -> rpc_pb2.StatusResponse:
    channel = grpc.insecure_channel(member.endpoint)
    try:
        return rpc_pb2_grpc.MaintenanceStub(channel).Status(rpc_pb2.StatusRequest(),
                                                            timeout=timeout_s)
    finally:
        channel.close()


@dataclass(frozen=True, slots=True)
class Ack:
    """A put the cluster acknowledged: `sent`/`at` are time.monotonic() when the request
    left and when the reply arrived."""

    key: bytes
    value: bytes
    revision: int
    sent: float
    at: float


class Writers:
    """Concurrent writers, each putting its own keys in sequence and recording every ack.

    A writer whose endpoint fails moves on to the next endpoint (as a client with several
    endpoints does), so the load continues across a failover. Each writer stops at `stop()` or
    after `max_puts`, so the load is bounded either way.
    """

    def __init__(self, endpoints: Sequence[str], count: int = 4, max_puts: int = 20_000) -> None:
        self._endpoints = list(endpoints)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.acks: list[Ack] = []
        self.errors = 0
        self._max_puts = max_puts
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(count)]

    def set_endpoints(self, endpoints: Sequence[str]) -> None:
        with self._lock:
            self._endpoints = list(endpoints)

    def start(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a writer did not stop"

    def sent_after(self, t: float) -> list[Ack]:
        """Acks of puts sent after `t` (a put sent earlier may be acked after a crash at `t`:
        it was committed before)."""
        with self._lock:
            return [a for a in self.acks if a.sent > t]

    def wait_acks(self, n: int, sent_after: float = 0.0, timeout_s: float = WAIT_S) -> None:
        wait_for(f"{n} acknowledged puts", lambda: len(self.sent_after(sent_after)) >= n or None,
                 timeout_s)

    def _run(self, index: int) -> None:
        attempt = index
        seq = 0
        while not self._stop.is_set() and seq < self._max_puts:
            with self._lock:
                endpoint = self._endpoints[attempt % len(self._endpoints)]
            channel = grpc.insecure_channel(endpoint)
            kv = rpc_pb2_grpc.KVStub(channel)
            try:
                while not self._stop.is_set() and seq < self._max_puts:
                    key = f"load/w{index}/{seq:06d}".encode()
                    value = f"{index}:{seq}".encode()
                    sent = time.monotonic()
                    resp = kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=2)
                    with self._lock:
                        self.acks.append(Ack(key, value, resp.header.revision, sent,
                                             time.monotonic()))
                    seq += 1
            except grpc.RpcError:
                # The put may or may not have been applied; only acks are promised. Retry the
                # same key on the next endpoint (a put is idempotent for this check).
                with self._lock:
                    self.errors += 1
                attempt += 1
                self._stop.wait(0.05)
            finally:
                channel.close()


def read_prefix(member: Member, prefix: bytes, serializable: bool = True) -> dict[bytes, bytes]:
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    with grpc_kv(member) as kv:
        resp = kv.Range(rpc_pb2.RangeRequest(key=prefix, range_end=end,
                                             serializable=serializable), timeout=30)
    return {kv_.key: kv_.value for kv_ in resp.kvs}


def assert_no_ack_lost(member: Member, acks: Sequence[Ack], prefix: bytes = b"load/") -> None:
    stored = read_prefix(member, prefix)
    missing = [a.key for a in acks if stored.get(a.key) != a.value]
    assert not missing, f"{member.name} lost {len(missing)} acknowledged puts, e.g. {missing[:5]}"

"""Range through read workers: the same answers as a member without workers, served partly
by the workers (counted, not assumed), and every linearizable read sees every write
acknowledged before it started, on whichever connection it arrives."""

from __future__ import annotations

import json
import threading
import time

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.harness import Member, etcdctl
from tests.workers.conftest import WORKERS
from tests.workers.probe import FRESH, member_ranges, survey

SETUP = [
    ("put", "a1", "v1"), ("put", "a2", "v2"), ("put", "a3", "v3"), ("put", "a4", "v4"),
    ("put", "b1", "x"), ("put", "b2", "y"), ("put", "a1", "v1-again"), ("del", "b1"),
]
# (etcdctl arguments, whether it is a Range); each is run REPEAT times, each time a new
# etcdctl process and so a new connection.
GETS = [
    ("get", "a1"),
    ("get", "a", "--prefix"),
    ("get", "a", "--prefix", "--consistency=s"),
    ("get", "a1", "--rev=2"),
    ("get", "a", "--prefix", "--limit=2", "-w", "json"),
    ("get", "a", "--prefix", "--count-only", "-w", "json"),
    ("get", "a", "--prefix", "--keys-only"),
    ("get", "a", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"),
    ("get", "--from-key", "a3"),
    ("get", "a1", "-w", "json"),
    ("get", "b", "--prefix", "-w", "json", "--consistency=s"),
    ("get", "a1", "--rev=999"),
    ("get", "nothing-here", "-w", "json"),
]
AFTER_COMPACT = [("get", "a1", "--rev=2"), ("get", "a1", "--rev=7"), ("get", "a", "--prefix")]
REPEAT = 3


def _answer(member: Member, args: tuple[str, ...], terms: list[int] | None = None
            ) -> tuple[int, object, list[str]]:
    """etcdctl's exit code, output and error lines. From JSON the member's ids and term are
    taken out (two members need not agree on them), the term into `terms`."""
    r = etcdctl([member.endpoint], *args, check=False)
    out: object = r.stdout
    if "json" in args and r.returncode == 0:
        doc = json.loads(r.stdout)
        doc["header"].pop("cluster_id")
        doc["header"].pop("member_id")
        if terms is not None:
            terms.append(int(doc["header"].pop("raft_term")))
        doc["header"].pop("raft_term", None)
        out = doc
    return r.returncode, out, [line for line in r.stderr.splitlines() if line.startswith("Error")]


def test_etcdctl_gets_answer_as_without_workers(
        workers_and_plain: tuple[Member, Member]) -> None:
    workers, plain = workers_and_plain
    for args in SETUP:
        for m in (workers, plain):
            etcdctl([m.endpoint], *args)
    before = survey(workers.endpoint, WORKERS)
    member_before = member_ranges(workers.endpoint)
    ranges = 0
    terms: list[int] = []
    for stage in (GETS, AFTER_COMPACT):
        if stage is AFTER_COMPACT:
            for m in (workers, plain):
                etcdctl([m.endpoint], "compact", "5")
        for args in stage:
            expected = _answer(plain, args)
            for _ in range(REPEAT):
                assert _answer(workers, args, terms) == expected, args
                ranges += 1
    assert any(code != 0 for code, _, _ in [_answer(plain, ("get", "a1", "--rev=999"))])

    # the term in the headers is the member's own, whichever process answered
    status = json.loads(etcdctl([workers.endpoint], "endpoint", "status", "-w", "json").stdout)
    assert terms and set(terms) == {int(status[0]["Status"]["raftTerm"])}, terms

    after = survey(workers.endpoint, WORKERS)
    by_member = member_ranges(workers.endpoint) - member_before
    by_workers = {pid: s.local_ranges - (before.workers[pid].local_ranges
                                         if pid in before.workers else 0)
                  for pid, s in after.workers.items()}
    # Every Range was answered exactly once: by the member or locally by a worker, and both
    # the member and the workers answered some. (Not every worker: which process accepts a
    # connection is the kernel's choice, and an idle one may lose most races.)
    assert by_member + sum(by_workers.values()) == ranges, (by_member, by_workers, ranges)
    assert by_member > 0 and sum(by_workers.values()) > 0, (by_member, by_workers)


def test_linearizable_reads_see_every_acknowledged_write(with_workers: Member) -> None:
    endpoint = with_workers.endpoint
    lock = threading.Lock()
    acked = [0]  # the highest value whose put was acknowledged
    failures: list[str] = []
    done = threading.Event()

    def writer() -> None:
        with grpc.insecure_channel(endpoint, options=FRESH) as channel:
            kv = pb_grpc.KVStub(channel)
            for i in range(1, 151):
                kv.Put(pb.PutRequest(key=b"ryw", value=str(i).encode()), timeout=10)
                with lock:
                    acked[0] = i
        done.set()

    def reader() -> None:
        while not done.is_set() and not failures:
            # a new connection per read: the reads land on the member and on the workers
            with grpc.insecure_channel(endpoint, options=FRESH) as channel:
                kv = pb_grpc.KVStub(channel)
                for _ in range(5):
                    with lock:
                        floor = acked[0]
                    resp = kv.Range(pb.RangeRequest(key=b"ryw"), timeout=10)
                    seen = int(resp.kvs[0].value) if resp.kvs else 0
                    if seen < floor:
                        failures.append(f"read {seen} after {floor} was acknowledged")

    before = survey(endpoint, WORKERS)
    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader)
                                                   for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert time.monotonic() - t0 < 120 and done.is_set()
    assert not failures, failures[:5]
    after = survey(endpoint, WORKERS)
    # the workers answered linearizable reads themselves, after asking for read indexes
    assert after.local_ranges > before.local_ranges
    assert sum(s.read_index_calls for s in after.workers.values()) > sum(
        s.read_index_calls for s in before.workers.values())

"""Where an etcdpy process spends its time, from a py-spy raw (collapsed-stack) profile.

The driver's --profile records one per etcdpy member and workload with

    py-spy record --pid PID --duration S --rate 100 --threads --idle --nonblocking -f raw -o F

(add --native, without --nonblocking, to see inside grpc's Cython/C core, LMDB and libc).
This prints, per thread, the share of wall-clock samples in each bucket (fsync, LMDB, Raft,
apply, gRPC, the shared-port relay, idle waiting, ...) and the hottest leaf frames.

    PYTHONPATH=. python -m scripts.bench.profile_summary OUT/profile-etcdpy-1-put-r1-m1.raw
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

# Waiting, not working: the innermost Python frame of an idle thread (a pool worker waiting for
# work, grpc's poller thread, the event loop in select) or a blocking native leaf.
IDLE_PY = re.compile(r"^(_worker \(concurrent/futures/thread\.py:81\)|Thread\.run \(threading"
                     r"\.py:982\)|EpollSelector\.select|BaseSelectorEventLoop\.select)")
IDLE_NATIVE = re.compile(r"^(epoll_wait|pthread_cond_wait|futex|__futex|sem_wait|poll) ")

# First match wins, so the more specific buckets come first. The patterns are matched against
# the whole stack (frames joined by ";", leaf last).
BUCKETS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("fsync", re.compile(r"(fdatasync|fsync|mdb\w*_env_sync|LmdbEnv\.sync)[^;]*$")),
    ("state LMDB commit (apply)", re.compile(r"WriteBatch\.__exit__")),
    ("raft log LMDB write", re.compile(r"LmdbRaftStorage\.save")),
    ("apply (python)", re.compile(r"etcdpy/server/apply\.py|EtcdServer\.apply")),
    ("raft core", re.compile(r"etcdpy/raft/")),
    ("raft driver other", re.compile(r"raft_node\.py")),
    ("storage reads (LMDB, mvcc)", re.compile(r"etcdpy/storage/")),
    ("shared-port relay", re.compile(r"etcdpy/netshare/")),
    ("servicers + etcdserver (python)", re.compile(r"etcdpy/server/")),
    ("protobuf", re.compile(r"protobuf|upb|_message\.abi3")),
    # Without --native, grpc's Cython callbacks show as time in the loop's Handle._run itself.
    ("grpc aio (cython/C core)", re.compile(r"grpc|Handle\._run \(asyncio/events\.py:\d+\)$")),
    ("asyncio loop", re.compile(r"asyncio/")),
)


@dataclass(frozen=True, slots=True)
class Sample:
    thread: str
    frames: tuple[str, ...]
    count: int


def parse(path: Path) -> list[Sample]:
    out = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        head, _, rest = stack.partition(";")
        # "thread (0x7f..): name" or "thread (1234): name": keep the name only
        thread = re.sub(r"^thread \([^)]*\):?\s*", "", head).strip() or head
        out.append(Sample(thread, tuple(rest.split(";")) if rest else (), int(n)))
    return out


def bucket(frames: tuple[str, ...]) -> str:
    joined = ";".join(frames)
    if frames and IDLE_NATIVE.match(frames[-1]):
        return "idle wait"
    python = [f for f in frames if ".py:" in f or "<frozen" in f]
    # py-spy cannot name libc's futex wait: an unnamed libc leaf under an idle Python frame is
    # that wait; a named one (write, send) is work.
    unnamed_libc = bool(frames) and frames[-1].startswith("0x") and "libc" in frames[-1]
    if python and IDLE_PY.match(python[-1]) and (frames[-1] == python[-1] or unnamed_libc):
        return "idle wait"
    for name, rx in BUCKETS:
        if rx.search(joined):
            return name
    return "other"


def summarise(samples: list[Sample], top: int) -> str:
    per_thread: dict[str, Counter[str]] = defaultdict(Counter)
    leaves: Counter[tuple[str, str]] = Counter()
    for s in samples:
        per_thread[s.thread][bucket(s.frames)] += s.count
        leaves[(s.thread, re.sub(r"\s+", " ", s.frames[-1] if s.frames else "?"))] += s.count
    total = sum(s.count for s in samples) or 1
    lines = [f"{total} samples"]
    for thread, c in sorted(per_thread.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(c.values())
        lines.append(f"\n{thread}: {n} samples")
        lines += [f"  {v / n:6.1%}  {k}" for k, v in c.most_common()]
    lines.append(f"\nhottest leaf frames (share of all samples, top {top}):")
    lines += [f"  {v / total:6.1%}  [{t}] {f}" for (t, f), v in leaves.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    for p in args.profiles:
        print(f"== {p}")
        print(summarise(parse(p), args.top))


if __name__ == "__main__":
    main()

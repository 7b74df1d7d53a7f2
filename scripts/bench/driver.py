"""Side-by-side benchmark: real etcd 3.5.1, etcdpy and the bare grpc.aio server, same load.

Every round starts each target fresh (new data dirs, 1 or 3 members on loopback, fsync on),
runs the workloads against it with the same load generator, and stops it; the target order
flips every round so slow drift on a shared machine hits all targets alike. The 1M-key load
(data-dir size, resident memory, restart-to-serving time) runs once, on 1-member clusters.
At the end it prints medians over rounds with ratios etcdpy/etcd and etcdpy/bare (quotients of
the medians), the lowest and highest of the same ratios taken round by round (on a shared
machine a lone round can be off by a fifth or more, so read a target as met only when the
spread agrees), and writes results.json and ratios.png (if matplotlib is installed) into --out.

    scripts/bench/run [--rounds 3] [--workloads put,range] [--targets etcd-1,etcdpy-1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from scripts.bench import generators, plot
from scripts.bench.servers import (
    Deployment,
    TargetSpec,
    cpu_seconds,
    disk_bytes,
    rss_bytes,
    thread_cpu_seconds,
)
from tests.e2e.harness import find_binary

REPO = Path(__file__).resolve().parents[2]
ALL_TARGETS = ("etcd-1", "etcdpy-1", "etcd-3", "etcdpy-3", "bare")
GEN_SLACK_S = 180.0  # a generator gets its duration plus this before it is killed


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload: the generator's workload name and load shape; `bare` if the bare server
    (Put, Range, put-only Txn, lease grants and keep-alives) can take it; `python` if the Python generator implements it."""

    name: str
    clients: int
    conns: int
    bare: bool = False
    python: bool = True
    flags: tuple[str, ...] = ()


def workloads(quick: bool) -> dict[str, Workload]:
    watchers, leases = ("50", "200") if quick else ("1000", "10000")
    table = [
        Workload("seqput", 1, 1, bare=True),
        Workload("put", 256, 16, bare=True),
        Workload("range", 256, 16, bare=True),
        Workload("srange", 256, 16, bare=True),
        Workload("txnput", 256, 16, bare=True),
        Workload("watch", 1, 16, bare=True, python=False, flags=("--watchers", watchers)),
        Workload("lease", 64, 16, bare=True, python=False, flags=("--leases", leases)),
        Workload("load", 16, 4, python=False),  # the 1M-key data set; see run_load
    ]
    return {w.name: w for w in table}


@dataclass(frozen=True, slots=True)
class Run:
    """One generator run against one target in one round (a row of results.json)."""

    round: int
    target: str
    workload: str
    ok: bool
    ops: int = 0
    seconds: float = 0.0
    ops_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    errors: int = 0
    first_error: str = ""
    server_cpu_us_per_op: float = 0.0  # steadier than ops/s when the machine is shared
    generator_cpu_s: float = 0.0  # to show the generator is not the bottleneck
    extra: dict[str, float] | None = None
    # Cores used, over the run, by the busiest process's main thread (a Python server's event
    # loop) and by every other thread of the target's processes together (see loop_usage).
    busiest_main_thread_cores: float = 0.0
    other_threads_cores: float = 0.0


@dataclass(frozen=True, slots=True)
class GenResult:
    """The generator's JSON line (loadgen/main.go and pygen.py print the same fields)."""

    ops: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    errors: int
    first_error: str
    extra: dict[str, float]

    @staticmethod
    def parse(line: str) -> GenResult:
        d = json.loads(line)
        return GenResult(int(d["ops"]), float(d["seconds"]), float(d["ops_per_s"]),
                         float(d["p50_ms"]), float(d["p99_ms"]), float(d["p999_ms"]),
                         int(d["errors"]), str(d.get("first_error", "")),
                         {str(k): float(v) for k, v in (d.get("extra") or {}).items()})


def loop_usage(before: dict[int, dict[int, float]], after: dict[int, dict[int, float]],
               wall_s: float) -> tuple[float, float]:
    """(cores of the busiest main thread, cores of all other threads) between two samples.

    One process's main thread near 1.0 is a saturated event loop. Well below it, with the
    server at its limit, the loop waits: for the disk (an fsync on the loop thread), for the
    GIL while other threads run Python, or for a core when the machine is full (the load
    generator shares it); /proc/PID/status's context switches tell the last apart."""
    if wall_s <= 0:
        return 0.0, 0.0
    busiest = others = 0.0
    for pid, threads in after.items():
        threads0 = before.get(pid, {})
        for tid, cpu in threads.items():
            # Thread by thread: one that ended between the samples (its CPU gone from the
            # second) must not make the others' sum shrink; one that started counts whole.
            used = cpu - threads0.get(tid, 0.0)
            if tid == pid:
                busiest = max(busiest, used)
            else:
                others += used
    return busiest / wall_s, others / wall_s


class Bench:
    def __init__(self, args: argparse.Namespace, gen: generators.Generator) -> None:
        self.args = args
        self.gen = gen
        self.work = workloads(args.quick)
        self.runs: list[Run] = []
        self.loads: list[dict[str, float | str]] = []
        self.live: list[Deployment] = []
        self.t0 = time.monotonic()

    def say(self, msg: str) -> None:
        el = int(time.monotonic() - self.t0)
        print(f"[bench {el // 60:02d}:{el % 60:02d}] {msg}", file=sys.stderr, flush=True)

    # ---- processes ------------------------------------------------------------------------
    def deploy(self, spec: TargetSpec, tag: str) -> Deployment:
        base = Path(tempfile.mkdtemp(prefix=f"{spec.name}-{tag}-", dir=self.args.tmp))
        d = Deployment(spec, base)
        self.live.append(d)  # before start: a half-started cluster is cleaned up too
        d.start()
        return d

    def undeploy(self, d: Deployment) -> None:
        d.stop()
        self.live.remove(d)
        shutil.rmtree(d.base_dir, ignore_errors=True)  # 1M keys x rounds would fill /tmp

    def stop_all(self) -> None:
        for d in list(self.live):
            d.stop()
        self.live.clear()

    def generate(self, w: Workload, endpoints: list[str], flags: list[str],
                 timeout_s: float) -> tuple[GenResult | None, str, float]:
        """Run the generator once; returns (its JSON or None, error text, its CPU seconds)."""
        cmd = [*self.gen.argv, f"--endpoints={','.join(endpoints)}", f"--workload={w.name}",
               f"--clients={w.clients}", f"--conns={w.conns}", *w.flags, *flags]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None, f"generator timed out after {timeout_s:.0f}s", 0.0
        finally:
            if proc.poll() is None:  # Ctrl-C while waiting
                proc.kill()
                proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            return None, f"generator exit {proc.returncode}: {err.strip()[-500:]}", cpu
        return GenResult.parse(lines[-1]), "", cpu

    # ---- one workload on one target -------------------------------------------------------
    def profile(self, rnd: int, d: Deployment, w: Workload) -> list[subprocess.Popen[bytes]]:
        """py-spy on every etcdpy member for the workload's duration (wall clock, idle threads
        included, not pausing the process); raw collapsed stacks go to --out for
        scripts/bench/profile_summary.py or any flamegraph tool."""
        if not self.args.profile or d.spec.kind != "etcdpy":
            return []
        spy = find_binary("py-spy")
        assert spy, "py-spy not found (pip install py-spy)"
        procs = []
        for m in d.members:
            assert m.proc is not None
            out = self.args.out / f"profile-{d.spec.name}-{w.name}-r{rnd}-{m.name}.raw"
            procs.append(subprocess.Popen(
                [spy, "record", "--pid", str(m.proc.pid), "--duration",
                 str(max(1, int(self.args.duration))), "--rate", "100", "--threads", "--idle",
                 "--nonblocking", "--format", "raw", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return procs

    def run_one(self, rnd: int, d: Deployment, w: Workload) -> None:
        flags = [f"--duration={self.args.duration:g}s"]
        pids = d.pids()
        cpu0 = cpu_seconds(pids)
        threads0, wall0 = thread_cpu_seconds(pids), time.monotonic()
        spies = self.profile(rnd, d, w)
        try:
            res, err, gen_cpu = self.generate(w, d.endpoints, flags,
                                              self.args.duration + GEN_SLACK_S)
        finally:
            for spy in spies:
                try:
                    spy.wait(timeout=self.args.duration + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
        cpu = cpu_seconds(pids) - cpu0
        main_cores, other_cores = loop_usage(threads0, thread_cpu_seconds(pids),
                                             time.monotonic() - wall0)
        if res is None:
            run = Run(rnd, d.spec.name, w.name, False, first_error=err, generator_cpu_s=gen_cpu)
            self.say(f"round {rnd} {d.spec.name:9s} {w.name:7s} FAILED: {err}")
        else:
            run = Run(rnd, d.spec.name, w.name, True, res.ops, res.seconds, res.ops_per_s,
                      res.p50_ms, res.p99_ms, res.p999_ms, res.errors, res.first_error,
                      cpu / res.ops * 1e6 if res.ops else 0.0, gen_cpu, res.extra or None,
                      main_cores, other_cores)
            # A Go server's main thread means nothing: the threads are shown for Python ones.
            threads = ("" if d.spec.kind == "etcd" else
                       f"(loop {main_cores:4.2f} + threads {other_cores:4.2f} cores)  ")
            self.say(f"round {rnd} {d.spec.name:9s} {w.name:7s} {run.ops_per_s:9.0f} ops/s  "
                     f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  "
                     f"server {run.server_cpu_us_per_op:5.0f} us/op {threads} "
                     f"generator {gen_cpu / max(run.seconds, 1e-9):4.2f} cores  "
                     f"errors {run.errors}")
        self.runs.append(run)

    def applicable(self, spec: TargetSpec, w: Workload) -> bool:
        if w.name == "load":
            return False  # its own phase
        if spec.kind == "bare" and not w.bare:
            return False
        return w.python or self.gen.kind == generators.Kind.GO

    def round(self, rnd: int, targets: list[TargetSpec], chosen: list[Workload]) -> None:
        order = targets if rnd % 2 else list(reversed(targets))
        for spec in order:
            todo = [w for w in chosen if self.applicable(spec, w)]
            if not todo:
                continue
            self.say(f"round {rnd} starting {spec.name}")
            try:
                d = self.deploy(spec, f"r{rnd}")
            except (RuntimeError, TimeoutError) as exc:
                # One target failing to start must not cost the other targets' results.
                self.say(f"round {rnd} {spec.name} did not start: {exc}")
                self.runs += [Run(rnd, spec.name, w.name, False, first_error=str(exc))
                              for w in todo]
                self.stop_all()
                continue
            try:
                for w in todo:
                    self.run_one(rnd, d, w)
            finally:
                self.undeploy(d)

    # ---- the 1M-key data set ---------------------------------------------------------------
    def run_load(self, targets: list[TargetSpec]) -> None:
        w = self.work["load"]
        keys = self.args.load_keys
        for spec in targets:
            if spec.kind == "bare" or spec.members != 1:
                continue
            self.say(f"load {spec.name}: {keys} keys of {self.args.load_value} bytes")
            try:
                d = self.deploy(spec, "load")
            except (RuntimeError, TimeoutError) as exc:
                self.say(f"load {spec.name} did not start: {exc}")
                self.loads.append({"target": spec.name, "error": str(exc)})
                self.stop_all()
                continue
            try:
                res, err, _ = self.generate(
                    w, d.endpoints, [f"--total={keys}", f"--val-size={self.args.load_value}"],
                    timeout_s=max(600.0, keys / 200))
                if res is None:
                    self.say(f"load {spec.name} FAILED: {err}")
                    self.loads.append({"target": spec.name, "error": err})
                    continue
                time.sleep(1.0)  # let the last writes settle before measuring memory
                rss = rss_bytes(d.pids())
                data = disk_bytes(d.members[0].data_dir)
                try:
                    restart = d.restart_first()
                except (RuntimeError, TimeoutError) as exc:
                    self.say(f"load {spec.name}: restart failed: {exc}")
                    self.loads.append({"target": spec.name, "error": f"restart: {exc}"})
                    continue
                row: dict[str, float | str] = {
                    "target": spec.name, "keys": float(res.ops), "keys_per_s": res.ops_per_s,
                    "data_dir_mb": data / 2**20, "rss_mb": rss / 2**20,
                    "rss_after_restart_mb": rss_bytes(d.pids()) / 2**20,
                    "restart_s": restart, "errors": float(res.errors),
                }
                self.loads.append(row)
                self.say(f"load {spec.name}: {row['keys_per_s']:.0f} keys/s, data dir "
                         f"{row['data_dir_mb']:.0f} MB, RSS {row['rss_mb']:.0f} MB, restart "
                         f"{restart:.2f} s")
            finally:
                self.undeploy(d)


# ---- summary ------------------------------------------------------------------------------------

def median_of(runs: list[Run], target: str, workload: str, attr: str) -> float | None:
    vals = [getattr(r, attr) for r in runs if r.ok and r.target == target
            and r.workload == workload]
    return statistics.median(vals) if vals else None


def paired_ratios(runs: list[Run], target: str, ref: str, workload: str) -> list[float]:
    """ops/s of `target` over `ref`'s in each round both ran: a round runs its targets back to
    back, so these pairs share the machine's state of the moment. Their spread says how far one
    round's ratio can be trusted on a shared machine (the median ratio alone does not)."""
    by_round = {r.round: r.ops_per_s for r in runs
                if r.ok and r.target == ref and r.workload == workload and r.ops_per_s > 0}
    return [r.ops_per_s / by_round[r.round] for r in runs
            if r.ok and r.target == target and r.workload == workload and r.round in by_round]


def summarise(runs: list[Run], names: list[str], targets: list[str]) -> list[dict[str, object]]:
    """Medians over rounds per (workload, target), with etcdpy's ratios to etcd and bare (the
    quotients of the medians) and the lowest and highest of the per-round ratios."""
    rows: list[dict[str, object]] = []
    for w in names:
        for t in targets:
            ops = median_of(runs, t, w, "ops_per_s")
            if ops is None:
                continue
            row: dict[str, object] = {
                "workload": w, "target": t, "ops_per_s": ops,
                "p50_ms": median_of(runs, t, w, "p50_ms"),
                "p99_ms": median_of(runs, t, w, "p99_ms"),
                "server_cpu_us_per_op": median_of(runs, t, w, "server_cpu_us_per_op"),
                "busiest_main_thread_cores": median_of(runs, t, w, "busiest_main_thread_cores"),
                "other_threads_cores": median_of(runs, t, w, "other_threads_cores"),
                "rounds": sum(1 for r in runs if r.ok and r.target == t and r.workload == w),
            }
            if t.startswith("etcdpy-"):
                ref = TargetSpec.parse(t).reference
                etcd_ops = median_of(runs, ref, w, "ops_per_s")
                etcd_p50 = median_of(runs, ref, w, "p50_ms")
                bare_ops = median_of(runs, "bare", w, "ops_per_s")
                p50 = row["p50_ms"]
                row["x_etcd"] = ops / etcd_ops if etcd_ops else None
                row["p50_x_etcd"] = p50 / etcd_p50 if etcd_p50 and isinstance(p50, float) else None
                row["x_bare"] = ops / bare_ops if bare_ops else None
                for key, other in (("x_etcd", ref), ("x_bare", "bare")):
                    paired = paired_ratios(runs, t, other, w)
                    if paired:
                        row[f"{key}_min"], row[f"{key}_max"] = min(paired), max(paired)
            rows.append(row)
    return rows


def spread(row: dict[str, object], key: str) -> str:
    """The lowest and highest of a row's per-round ratios as "lo-hi", or a dash."""
    lo, hi = row.get(f"{key}_min"), row.get(f"{key}_max")
    if isinstance(lo, float) and isinstance(hi, float):
        return f"{lo:.2f}-{hi:.2f}"
    return "-"


def fmt(v: object, spec: str) -> str:
    """`v` formatted by `spec`, or a dash as wide, for a ratio that does not apply."""
    if isinstance(v, int | float):
        return format(v, spec)
    return "-".rjust(int(spec.split(".")[0]))


def print_table(rows: list[dict[str, object]], loads: list[dict[str, float | str]]) -> None:
    print(f"{'workload':8s} {'target':9s} {'ops/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'cpu us/op':>9s} {'x etcd':>7s} {'p50 x':>6s} {'x bare':>7s} "
          f"{'rounds x etcd':>13s} {'rounds x bare':>13s}")
    for r in rows:
        print(f"{r['workload']!s:8s} {r['target']!s:9s} {fmt(r['ops_per_s'], '9.0f')} "
              f"{fmt(r['p50_ms'], '8.2f')} {fmt(r['p99_ms'], '8.2f')} "
              f"{fmt(r['server_cpu_us_per_op'], '9.0f')} {fmt(r.get('x_etcd'), '7.2f')} "
              f"{fmt(r.get('p50_x_etcd'), '6.2f')} {fmt(r.get('x_bare'), '7.2f')} "
              f"{spread(r, 'x_etcd'):>13s} {spread(r, 'x_bare'):>13s}")
    if loads:
        print(f"\n{'load':8s} {'target':9s} {'keys/s':>9s} {'data MB':>8s} {'RSS MB':>8s} "
              f"{'restart s':>9s}")
        for ld in loads:
            if "error" in ld:
                print(f"{'load':8s} {ld['target']!s:9s} FAILED: {ld['error']}")
                continue
            print(f"{'load':8s} {ld['target']!s:9s} {fmt(ld['keys_per_s'], '9.0f')} "
                  f"{fmt(ld['data_dir_mb'], '8.1f')} {fmt(ld['rss_mb'], '8.1f')} "
                  f"{fmt(ld['restart_s'], '9.2f')}")
        for k, v in load_ratios(loads).items():
            print(f"load etcdpy/etcd {k}: {v:.2f}")


def load_ratios(loads: list[dict[str, float | str]]) -> dict[str, float]:
    by = {ld["target"]: ld for ld in loads if "error" not in ld}
    py, go = by.get("etcdpy-1"), by.get("etcd-1")
    if not py or not go:
        return {}
    out = {}
    for k in ("keys_per_s", "data_dir_mb", "rss_mb", "restart_s"):
        a, b = py[k], go[k]
        if isinstance(a, float) and isinstance(b, float) and b > 0:
            out[k] = a / b
    return out


def loadavg() -> list[float]:
    return list(os.getloadavg())


def git_head() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                       text=True, check=False)
    return r.stdout.strip()


# ---- command line -------------------------------------------------------------------------------

def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (quick: 1)")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per workload per target per round (default 10; quick: 1)")
    ap.add_argument("--workloads", default=None,
                    help="comma list of seqput,put,range,srange,txnput,watch,lease,load "
                         "(default all; quick: seqput,put,range)")
    ap.add_argument("--targets", default=",".join(ALL_TARGETS),
                    help=f"comma list of {','.join(ALL_TARGETS)}; also etcdpy-1w / "
                         "etcdpy-1wN: one member with 1 / N read workers (--etcdpy-read-workers); "
                         "a trailing g (etcdpy-1g, etcdpy-1w2g) adds --listen-client-http-urls: "
                         "gRPC alone on the client port, which the workers bind too")
    ap.add_argument("--generator", choices=("auto", "go", "py"), default="auto",
                    help="auto: the Go clientv3 generator if it builds, else Python")
    ap.add_argument("--load-keys", type=int, default=None, help="default 1000000 (quick: 2000)")
    ap.add_argument("--load-value", type=int, default=256, help="value bytes for the load")
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy every etcdpy member during every workload (perturbs results)")
    ap.add_argument("--out", default=None, help="directory for results.json and ratios.png")
    ap.add_argument("--tmp", default=None, help="parent of the data dirs (default: system tmp)")
    a = ap.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration or (1.0 if a.quick else 10.0)
    a.load_keys = a.load_keys or (2000 if a.quick else 1_000_000)
    a.workloads = a.workloads or ("seqput,put,range" if a.quick else
                                  "seqput,put,range,srange,txnput,watch,lease,load")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    a.out = Path(a.out or Path(tempfile.gettempdir()) / f"etcdpy-bench-{stamp}")
    return a


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so SIGTERM cleans up through the same finally as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    table = workloads(args.quick)
    names = args.workloads.split(",")
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(unknown)} (know {', '.join(table)})")
    targets = [TargetSpec.parse(t) for t in args.targets.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix="etcdpy-bench-data-", dir=args.tmp))
    args.tmp = str(tmp_root)
    # Explicitly, also for SIGINT: a shell starts background jobs with SIGINT ignored, and
    # Python then leaves it so; the benchmark must still stop cleanly when told to.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    gen = generators.choose(args.generator)
    bench = Bench(args, gen)
    bench.say(f"generator {gen.name} ({gen.why or 'asked for'}); load average "
              f"{' '.join(f'{x:.2f}' for x in loadavg())} on {os.cpu_count()} cpus")
    skipped = [n for n in names if not table[n].python and gen.kind != generators.Kind.GO]
    if skipped:
        bench.say(f"the Python generator cannot run {', '.join(skipped)}: skipped")
    load_before = loadavg()
    chosen = [table[n] for n in names]
    interrupted = False
    try:
        for rnd in range(1, args.rounds + 1):
            bench.round(rnd, targets, chosen)
        if "load" in names and gen.kind == generators.Kind.GO:
            bench.run_load(targets)
    except KeyboardInterrupt:
        interrupted = True
        bench.say("interrupted: stopping servers, writing what was measured")
    finally:
        bench.stop_all()
        shutil.rmtree(tmp_root, ignore_errors=True)
    rows = summarise(bench.runs, names, [t.name for t in targets])
    ratios = load_ratios(bench.loads)
    results = {
        "meta": {"git": git_head(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "generator": gen.name, "generator_why": gen.why, "cpus": os.cpu_count(),
                 "loadavg_before": load_before, "loadavg_after": loadavg(),
                 "rounds": args.rounds, "duration_s": args.duration,
                 "workloads": names, "targets": [t.name for t in targets],
                 "skipped": skipped, "interrupted": interrupted,
                 "profiled": args.profile},
        "summary": rows,
        "load": bench.loads,
        "load_ratios": ratios,
        "runs": [asdict(r) for r in bench.runs],
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print_table(rows, bench.loads)
    png = plot.write(rows, ratios, args.out / "ratios.png")
    print(f"\nresults: {args.out / 'results.json'}")
    print(f"plot: {png}" if png else "plot: skipped (pip install matplotlib)")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run fault schedules: cluster, traffic, faults, heal, final checks, verdict.

One schedule = start a cluster of real members, start recorded clients and watchers, inject the
schedule's faults for its duration, heal everything, wait until every member serves, make a
final write (which must succeed), compare every member's HashKV at that write's revision, stop
the traffic and give the history to `tests.faults.verdict.check_history`.

Each schedule runs in a child process (`--child`): with network namespaces the child runs in the
lab's client host, so it reaches the members' 10.x addresses; on the loopback fallback it runs
beside them. The parent owns the lab (namespaces, bridge) and removes it, and every process in
it, whatever the child did.

SIGTERM, SIGHUP or ^C stop the runner cleanly: the parent passes SIGTERM to the running
children, each child stops its traffic and members (its `finally`s run, as they would not
under a bare signal), and the parent then removes the labs as after any schedule.

`scripts/faults` is the command line of this module; see `main`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests import netlab
from tests.faults.cluster import REPO, FaultCluster, Place, loopback_places, settle
from tests.faults.history import History, load_path, save
from tests.faults.nemesis import heal_all, inject
from tests.faults.schedule import ALL_KINDS, Defect, FaultKind, Schedule, make_schedule
from tests.faults.traffic import Traffic, keys
from tests.faults.verdict import CheckResult, check_history

CHILD_SLACK_S = 300.0  # start-up, settling, checking: beyond the schedule's own duration
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _exit_on_signal(signum: int, _frame: object) -> None:
    """A stop signal as an exception in the main thread, so every `finally` on the way out
    runs (the default action ends the process on the spot)."""
    raise SystemExit(128 + signum)


class _Children:
    """The schedules' child processes running now, for the parent to stop on a signal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[str]] = set()

    def add(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def terminate_all(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()


_CHILDREN = _Children()


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line chose; a schedule is `make_schedule(seed, **these)`."""

    sizes: tuple[int, ...] = (1, 3, 5)
    kinds: tuple[FaultKind, ...] = ALL_KINDS
    duration_s: float = 20.0
    defect: Defect = Defect.NONE
    netns: bool = True
    keep: bool = False  # keep the run dir of passing schedules too

    def schedule(self, seed: int) -> Schedule:
        return make_schedule(seed, sizes=self.sizes, kinds=self.kinds,
                             duration_s=self.duration_s, defect=self.defect,
                             netns=self.netns, power=power_available())

    def replay(self, seed: int) -> str:
        cmd = (f"scripts/faults --schedules 1 --seed {seed} --duration {self.duration_s:g} "
               f"--sizes {','.join(map(str, self.sizes))} "
               f"--faults {','.join(k.value for k in self.kinds)}")
        if self.defect:
            cmd += f" --defect {self.defect}"
        if not self.netns:
            cmd += " --loopback"
        return cmd

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "kinds": [k.value for k in self.kinds]})

    @classmethod
    def from_json(cls, text: str) -> Options:
        d = json.loads(text)
        return cls(tuple(d["sizes"]), tuple(FaultKind(k) for k in d["kinds"]),
                   d["duration_s"], Defect(d["defect"]), d["netns"], d["keep"])


@dataclass(frozen=True, slots=True)
class RunResult:
    seed: int
    size: int
    ok: bool
    kind: str  # "" when ok; the checker's kind, or "hashkv", "liveness", "error"

    @property
    def safety_violation(self) -> bool:
        """A broken promise (what the checkers and HashKV find), not a crash of the harness."""
        return not self.ok and self.kind not in ("error", "liveness")
    explanation: str
    unknown: bool
    operations: int
    faults: dict[str, int] = field(default_factory=dict)
    out_dir: str = ""
    seconds: float = 0.0


def power_available() -> bool:
    """Power loss needs the lazy file system layer (tests/faults/lazyfs.py) and FUSE."""
    try:
        from tests.faults import lazyfs
    except ImportError:
        return False
    return lazyfs.unavailable_reason() is None


def _check(history: History) -> CheckResult:
    return check_history(history)


class FaultLog:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:7.2f}s {text}"
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)


def _sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


class Unavailable(Exception):
    """The healed cluster did not serve again (a liveness failure, not a safety one)."""


def defect_args(defect: Defect) -> tuple[list[str], dict[str, str]]:
    if defect == Defect.NO_FSYNC:
        return ["--unsafe-no-fsync"], {}
    if defect in (Defect.READ_LOCAL, Defect.VOTE_NOT_PERSISTED):
        return [], {"ETCDPY_TEST_DEFECTS": defect.value}
    return [], {}


def run_schedule(schedule: Schedule, places: Sequence[Place], out_dir: Path) -> RunResult:
    """Run one schedule here (the caller is where the members' addresses are reachable)."""
    started = time.monotonic()
    log = FaultLog()
    log(schedule.describe())
    history = History(seed=schedule.seed, keys=keys(schedule.key_count))
    args, env = defect_args(schedule.defect)
    lazy = any(step.kind == FaultKind.POWER for step in schedule.steps)
    cluster = FaultCluster(out_dir, args, places=list(places), env=env, lazy=lazy)
    counts: Counter[str] = Counter()
    traffic: Traffic | None = None
    verdict_kind, explanation, unknown = "", "", False
    try:
        cluster.start()
        settle(cluster)
        log(f"cluster up, leader {getattr(cluster.leader(), 'name', '?')}")
        traffic = Traffic(history, lambda: cluster.endpoints, schedule.clients,
                          schedule.watchers, schedule.seed).start()
        t0 = time.monotonic()
        for i, step in enumerate(schedule.steps):
            _sleep_until(t0 + step.at_s)
            if i == len(schedule.steps) // 2:
                traffic.start_late_watchers()
            log(f"step {step.describe()}")
            fault = inject(cluster, step)
            counts[step.kind.value] += 1
            log(f"inject {fault.description}")
            if not fault.held:
                time.sleep(step.hold_s)
            fault.heal()
            log(f"heal {fault.description}")
        if len(schedule.steps) < 2:
            traffic.start_late_watchers()
        _sleep_until(t0 + schedule.duration_s)
        heal_all(cluster)
        try:
            settle(cluster)
            log("healed and settled")
            final = traffic.final_write(cluster.endpoints)
        except (TimeoutError, AssertionError, RuntimeError) as exc:
            raise Unavailable(f"not serving after healing: {exc}") from exc
        assert final.response is not None
        hashes = cluster.hash_at(final.response.revision)
        log(f"final write at revision {final.response.revision}; hashkv {hashes}")
        traffic.stop()
        # The history's verdict first (it says what a client saw), then the members' state.
        verdict = _check(history)
        verdict_kind = "" if verdict.ok and not verdict.unknown else (verdict.kind or "unknown")
        explanation, unknown = verdict.explanation, verdict.unknown
        if len(set(hashes.values())) != 1:
            differ = f"members differ at revision {final.response.revision}: {hashes}"
            verdict_kind = verdict_kind or "hashkv"
            explanation = f"{differ}\n{explanation}" if explanation else differ
    except Unavailable as exc:
        verdict_kind, explanation = "liveness", str(exc)
    except Exception as exc:  # the run itself failed: report it, with the logs kept
        verdict_kind, explanation = "error", f"{type(exc).__name__}: {exc}"
    finally:
        if traffic is not None:
            with contextlib.suppress(AssertionError):
                traffic.stop()
        cluster.close()
    ok = verdict_kind == ""
    log(f"verdict: {'ok' if ok else verdict_kind}")
    (out_dir / "faults.log").write_text("\n".join(log.lines) + "\n")
    if not ok:
        (out_dir / "verdict.txt").write_text(f"{verdict_kind}\n{explanation}\n")
    save(history, out_dir / "history.jsonl")
    return RunResult(schedule.seed, schedule.size, ok, verdict_kind, explanation, unknown,
                     len(history.operations), dict(counts), str(out_dir),
                     time.monotonic() - started)


# --- the parent: one lab (or loopback slot) and one child per schedule ----------------------


def _kill_netns_processes(lab: netlab.NetLab) -> None:
    """Members and proxies are the child's children: make sure none outlives the lab."""
    for host in lab.hosts:
        r = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True,
                           timeout=20, check=False)
        for pid in r.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


def run_one(seed: int, options: Options, out_root: Path, slot: int = 0) -> RunResult:
    """Run schedule `seed` in a child process; keep its dir only if it failed (or --keep)."""
    schedule = options.schedule(seed)
    out_dir = out_root / f"seed-{seed}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    lab: netlab.NetLab | None = None
    if options.netns:
        names = [f"m{i}" for i in range(1, schedule.size + 1)]
        lab = netlab.NetLab.create([*names, "cl"], tag=f"f{slot % 10}")
        places = [Place(h.name, h.address, h.netns) for h in lab.hosts[:-1]]
        wrap = lab.hosts[-1].command
    else:
        places = loopback_places(schedule.size, slot)
        wrap = list
    argv = wrap([sys.executable, "-m", "tests.faults.runner", "--child", str(seed),
                 options.to_json(), json.dumps([asdict(p) for p in places]), str(out_dir)])
    proc: subprocess.Popen[str] | None = None
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=REPO, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        _CHILDREN.add(proc)
        try:
            stdout, _ = proc.communicate(timeout=schedule.duration_s + CHILD_SLACK_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        lines = stdout.strip().splitlines()
        if proc.returncode == 0 and lines:
            result = RunResult(**json.loads(lines[-1]))
        else:
            result = RunResult(seed, schedule.size, False, "error",
                               f"child exited with {proc.returncode}", False, 0, {},
                               str(out_dir))
    except subprocess.TimeoutExpired:
        result = RunResult(seed, schedule.size, False, "error", "child timed out", False, 0,
                           {}, str(out_dir))
    finally:
        if proc is not None:
            _CHILDREN.discard(proc)
        if lab is not None:
            _kill_netns_processes(lab)
            lab.close()
    if result.ok and not options.keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return result


def _run_safely(seed: int, options: Options, out_root: Path, slot: int) -> RunResult:
    """`run_one`, with a failure to even set the run up reported as that schedule's error."""
    try:
        return run_one(seed, options, out_root, slot)
    except Exception as exc:
        return RunResult(seed, 0, False, "error", f"{type(exc).__name__}: {exc}", False, 0, {},
                         str(out_root / f"seed-{seed}"))


@dataclass(slots=True)
class Summary:
    results: list[RunResult] = field(default_factory=list)

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in self.results if not r.ok]

    def text(self, options: Options) -> str:
        faults: Counter[str] = Counter()
        for r in self.results:
            faults.update(r.faults)
        lines = [
            f"schedules: {len(self.results)}  operations: "
            f"{sum(r.operations for r in self.results)}  violations: {len(self.failures)}",
            "faults injected: " + (", ".join(f"{k}={v}" for k, v in sorted(faults.items()))
                                   or "none"),
        ]
        for r in self.failures:
            lines += [f"FAILED seed {r.seed} ({r.kind}): {r.explanation[:2000]}",
                      f"  history and logs: {r.out_dir}",
                      f"  replay: {options.replay(r.seed)}"]
        return "\n".join(lines)


def run_many(seeds: Sequence[int], options: Options, out_root: Path, jobs: int = 1,
             stop_at_first: bool = False) -> Summary:
    summary = Summary()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        # slot: which lab tag / loopback range a running schedule uses; never two at once
        pending = {pool.submit(_run_safely, s, options, out_root, slot): slot
                   for slot, s in enumerate(seeds[:jobs])}
        queue = list(seeds[jobs:])
        done_count = 0
        try:
            while pending:
                done, _ = concurrent.futures.wait(pending, return_when="FIRST_COMPLETED")
                for fut in done:
                    slot = pending.pop(fut)
                    r = fut.result()
                    summary.results.append(r)
                    done_count += 1
                    verdict = "ok" if r.ok else f"VIOLATION {r.kind}"
                    print(f"[{done_count}/{len(seeds)}] seed {r.seed} size {r.size} "
                          f"ops {r.operations} faults {sum(r.faults.values())} "
                          f"{r.seconds:.0f}s: {verdict}", flush=True)
                    if queue and not (stop_at_first and summary.failures):
                        nxt = queue.pop(0)
                        pending[pool.submit(_run_safely, nxt, options, out_root, slot)] = slot
        except BaseException:
            # Stopped (a signal, ^C): end the running schedules now, before the pool waits
            # for its threads; each thread then removes its lab as after any schedule.
            print("stopping: ending the running schedules", file=sys.stderr, flush=True)
            _CHILDREN.terminate_all()
            raise
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/faults", description=__doc__.split("\n")[0])
    p.add_argument("--schedules", type=int, default=1)
    p.add_argument("--seed", type=int, default=1, help="first seed; schedule i uses seed+i")
    p.add_argument("--duration", type=float, default=20.0, help="fault phase, seconds")
    p.add_argument("--sizes", default="1,3,5")
    p.add_argument("--faults", default=",".join(k.value for k in ALL_KINDS))
    p.add_argument("--defect", default="", choices=[d.value for d in Defect])
    p.add_argument("--out", default="")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--loopback", action="store_true", help="127.0.0.x, no namespaces")
    p.add_argument("--keep", action="store_true", help="keep passing runs' dirs too")
    p.add_argument("--stop", action="store_true", help="stop at the first violation")
    p.add_argument("--check", metavar="HISTORY", help="only check a saved history.jsonl")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_on_signal)
    if a.child:
        return _child(*a.child)
    if a.check:
        verdict = _check(load_path(Path(a.check)))
        print("ok" if verdict.ok and not verdict.unknown else
              f"VIOLATION {verdict.kind or 'unknown'}: {verdict.explanation}")
        return 0 if verdict.ok and not verdict.unknown else 1
    reason = netlab.unavailable_reason()
    netns = not a.loopback and reason is None
    if not netns and not a.loopback:
        print(f"no network namespaces ({reason}): members on 127.0.0.x, no iptables faults",
              file=sys.stderr)
    options = Options(tuple(int(s) for s in a.sizes.split(",")),
                      tuple(FaultKind(k) for k in a.faults.split(",") if k),
                      a.duration, Defect(a.defect), netns, a.keep)
    out_root = Path(a.out or tempfile.mkdtemp(prefix="etcdpy-faults-"))
    seeds = [a.seed + i for i in range(a.schedules)]
    print(f"{len(seeds)} schedules from seed {a.seed}, output under {out_root}", flush=True)
    summary = run_many(seeds, options, out_root, a.jobs, a.stop)
    print(summary.text(options), flush=True)
    return 1 if summary.failures else 0


def _child(seed: str, options_json: str, places_json: str, out_dir: str) -> int:
    options = Options.from_json(options_json)
    schedule = options.schedule(int(seed))
    places = [Place(**p) for p in json.loads(places_json)]
    result = run_schedule(schedule, places, Path(out_dir))
    print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

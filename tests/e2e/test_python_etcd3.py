"""python-etcd3 (the gRPC client most Python users have) against etcdpy and real etcd 3.5.

Each scenario in `clients/etcd3_scenarios.py` runs in its own process against each server;
what the client saw must be the same, and must be what the scenario expects.
Needs the `etcd3` package (a test dependency).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Member
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _start(member: Member, scenario: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           # python-etcd3's generated code only loads with the pure-Python protobuf.
           "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.clients.etcd3_scenarios", member.endpoint, scenario],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )


def _both(pair: Pair, scenario: str) -> dict[str, Any]:
    """Run the scenario against both servers at once; assert equal answers; return etcd's."""
    procs = [(m, _start(m, scenario)) for m in pair.members]
    answers = []
    for m, proc in procs:
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, f"{scenario} on {m.kind} failed:\n{err}"
        text = out.replace(str(m.client_port), "<client>").replace(str(m.peer_port), "<peer>")
        answers.append(json.loads(text))
    want, got = answers
    assert got == want
    return want


def test_get_put_delete_prefix_compact(pair: Pair) -> None:
    out = _both(pair, "kv")
    assert out["put"] == 2
    assert out["get"] == ["/app/a", "uno", 2, 7, 3, False]
    assert out["prefix"][0][0] == "/app/a" and len(out["prefix"]) == 3
    assert out["prefix_desc_create"] == ["/app/c", "/app/b", "/app/a"]
    assert [out["replace_ok"], out["replace_bad"]] == [True, False]
    assert [out["pine_new"], out["pine_old"]] == [True, False]
    assert [out["delete"], out["delete_missing"]] == [True, False]
    assert out["after"] == ["/other"]
    assert out["compacted"] == ["OUT_OF_RANGE",
                                "etcdserver: mvcc: required revision has been compacted"]


def test_transactions(pair: Pair) -> None:
    out = _both(pair, "txn")
    assert out["first"] is True and out["second"] is False
    assert out["first_responses"][1] == [["k", "w", 2, 4, 2, False]]
    assert out["first_responses"][3] == []
    assert out["keys"] == ["else", "k"]


def test_leases_with_refresh(pair: Pair) -> None:
    out = _both(pair, "lease")
    assert out["granted"] == 60 and out["keys"] == ["/l/a", "/l/b"]
    assert out["refresh_ttl"] == [60] and out["info"] == [60, True]
    assert out["after_revoke"] == [] and out["revoked_ttl"] == -1
    assert out["revoked_refresh"] == [0]
    assert out["short_expired"] is True


def test_watch_and_watch_prefix(pair: Pair) -> None:
    out = _both(pair, "watch")
    assert out["key"] == [["put", "w/a", "0", 2, ""], ["put", "w/a", "1", 3, ""],
                          ["delete", "w/a", "", 4, ""]]
    assert out["prefix"][1] == ["put", "w/a", "1", 3, "0"]  # with prev_kv
    assert out["prefix"][-1] == ["put", "w/a", "3", 6, ""]  # after a delete: no previous
    assert out["callback"] == [["put", "w/b", "2", 5, ""], ["put", "w/a", "3", 6, ""]]
    assert out["once_timeout"] == "WatchTimedOut"


def test_lock_recipe(pair: Pair) -> None:
    out = _both(pair, "lock")
    assert out["first"] is True and out["held"] is True
    assert out["second_while_held"] is False
    assert out["release"] is True and out["second_after_release"] == [True]
    assert out["release_twice"] is False
    assert out["context"] is True and out["context_after"] is None


def test_members_and_status(pair: Pair) -> None:
    out = _both(pair, "cluster")
    assert out["members"] == [["m1", ["http://127.0.0.1:<peer>"], ["http://127.0.0.1:<client>"]]]
    assert out["leader_is_me"] and out["db_size_positive"] and out["raft_index_positive"]
    assert out["version"] == ["3", "5"] and out["alarms"] == []

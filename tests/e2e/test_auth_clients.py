"""python-etcd3 with `etcd3.client(user=, password=)` against etcdpy and etcd 3.5.1: the same
answers, permitted and refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e

ROOT_DIR = Path(__file__).resolve().parents[2]
ROOT = ("--user", "root:rootpw")


def test_python_etcd3_with_user_and_password(pair: Pair) -> None:
    for step in (("user", "add", "root:rootpw"), ("auth", "enable"),
                 (*ROOT, "user", "add", "alice:apw"), (*ROOT, "role", "add", "ra"),
                 (*ROOT, "role", "grant-permission", "ra", "readwrite", "/a", "--prefix"),
                 (*ROOT, "user", "grant-role", "alice", "ra")):
        pair.same(*step)
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR),
           "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.clients.etcd3_auth", m.endpoint],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT_DIR)
        for m in pair.members]
    answers = []
    for m, proc in zip(pair.members, procs, strict=True):
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, f"{m.kind}: {err}"
        answers.append(json.loads(out))
    want, got = answers
    assert got == want
    assert want["get"] == "uno" and want["prefix"] == ["uno"]
    assert want["put_denied"] == ["error", "PERMISSION_DENIED", "etcdserver: permission denied"]
    assert want["wrong_password"][0] == "error"

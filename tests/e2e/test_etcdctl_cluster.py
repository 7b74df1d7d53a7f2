"""`etcdctl member list`, `endpoint status|health|hashkv`, `alarm list` against etcdpy.

Outputs are compared with real etcd 3.5 after replacing what must differ: ports, ids, Raft
terms and indexes, database sizes, timings and the version etcdpy reports (3.5.17 on
purpose, for clients that gate features on it).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.harness import Member, etcdctl, single_member
from tests.e2e.normalise import IdMap, normalise_text
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e

_TOOK = re.compile(r"(took = )?[0-9.]+(µs|ms|s)\b")
_TABLE_RULE = re.compile(r"[ \-+]{2,}")
_TABLE_VOLATILE = re.compile(r"\|\s*(\d+(\.\d+)?\s*[kMG]?B|3\.5\.\d+|\d+)\s*(?=\|)")


def _ports_masked(m: Member, text: str) -> str:
    return text.replace(str(m.client_port), "<client>").replace(str(m.peer_port), "<peer>")


def _masked_run(pair: Pair, *args: str) -> list[tuple[int, str, str]]:
    out = []
    for m, r in zip(pair.members, pair.each(*args), strict=True):
        ids = IdMap()
        stdout = _TOOK.sub(lambda t: f"{t.group(1) or ''}<t>", _ports_masked(m, r.stdout))
        # Table column widths follow the longest cell (a port, a duration): ignore them.
        stdout = _TABLE_RULE.sub(" ", stdout)
        out.append((r.returncode, normalise_text(stdout, ids), r.stderr))
    return out


def test_member_list_formats(pair: Pair) -> None:
    for fmt in ("simple", "table"):
        want, got = _masked_run(pair, "member", "list", "-w", fmt)
        assert got == want
    want, got = _masked_run(pair, "member", "list")
    assert got == want
    assert want[1] == "<id1>, started, m1, http://127.0.0.1:<peer>, http://127.0.0.1:<client>, false\n"
    want, got = (json.loads(_ports_masked(m, r.stdout)) for m, r in
                 zip(pair.members, pair.each("member", "list", "-w", "json"), strict=True))
    assert [{k: v for k, v in mem.items() if k != "ID"} for mem in got["members"]] == [
        {k: v for k, v in mem.items() if k != "ID"} for mem in want["members"]]
    assert got["header"]["member_id"] == got["members"][0]["ID"]


def test_same_flags_give_etcds_member_and_cluster_ids(tmp_path_factory: pytest.TempPathFactory
                                                      ) -> None:
    """Started with etcd's flags (same name, URLs, token), etcdpy derives the same member
    and cluster ids that etcd derives, so `member list` is the same."""
    answers = []
    etcd = single_member("etcd", tmp_path_factory.mktemp("etcd"),
                         extra_args=["--initial-cluster-token", "tok-1"])
    for kind in ("etcd", "etcdpy"):
        m = Member(kind, etcd.name, tmp_path_factory.mktemp(kind) / "data", etcd.client_port,
                   etcd.peer_port, list(etcd.extra_args))
        m.start()
        try:
            m.wait_serving()
            answers.append(json.loads(etcdctl([m.endpoint], "member", "list", "-w", "json").stdout))
        finally:
            m.stop()
    want, got = answers
    for answer in answers:
        answer["header"].pop("raft_term", None)
        answer["header"].pop("revision", None)
    assert got == want


def test_endpoint_status(pair: Pair) -> None:
    want, got = (json.loads(r.stdout) for r in pair.each("endpoint", "status", "-w", "json"))
    for answer, m in ((want, pair.etcd), (got, pair.etcdpy)):
        (entry,) = answer
        assert entry["Endpoint"] == m.endpoint
        status = entry["Status"]
        assert status["leader"] == status["header"]["member_id"]
        assert status["raftIndex"] >= status["raftAppliedIndex"] > 0
        assert status["dbSize"] > 0
        assert re.fullmatch(r"3\.5\.\d+", status["version"])
    assert sorted(got[0]["Status"]) == sorted(want[0]["Status"])
    tables = []
    for m, r in zip(pair.members, pair.each("endpoint", "status", "-w", "table"), strict=True):
        masked = _TABLE_VOLATILE.sub("| <v> ", normalise_text(_ports_masked(m, r.stdout), IdMap()))
        tables.append(_TABLE_RULE.sub(" ", masked))  # widths follow the ids' lengths
    assert tables[1] == tables[0]
    assert "|      true |      false |" in pair.each("endpoint", "status", "-w", "table")[1].stdout
    simple = [_TABLE_VOLATILE.sub("| <v> ", r.stdout) for r in pair.each("endpoint", "status")]
    assert all(", true, false, " in s for s in simple)


def test_endpoint_status_and_health_with_cluster_flag(pair: Pair) -> None:
    """`--cluster` finds the endpoints through the member list's client URLs."""
    want, got = _masked_run(pair, "endpoint", "health", "--cluster")
    assert got == want
    assert want[1] == "http://127.0.0.1:<client> is healthy: successfully committed proposal: " \
                      "took = <t>\n"
    for m, r in zip(pair.members, pair.each("endpoint", "status", "--cluster", "-w", "json"),
                    strict=True):
        assert [e["Endpoint"] for e in json.loads(r.stdout)] == [m.client_url]


def test_endpoint_health_formats(pair: Pair) -> None:
    want, got = _masked_run(pair, "endpoint", "health")
    assert got == want and want[0] == 0
    want, got = _masked_run(pair, "endpoint", "health", "-w", "table")
    assert got == want
    answers = [json.loads(r.stdout) for r in pair.each("endpoint", "health", "-w", "json")]
    for answer, m in zip(answers, pair.members, strict=True):
        (entry,) = answer
        assert entry["endpoint"] == m.endpoint and entry["health"] is True
        assert "error" not in entry
    assert sorted(answers[1][0]) == sorted(answers[0][0])


def test_alarm_list_and_hashkv(pair: Pair) -> None:
    assert pair.same("alarm", "list").stdout == ""
    pair.same("put", "k", "v")
    for m, r in zip(pair.members, pair.each("endpoint", "hashkv", "-w", "json"), strict=True):
        (entry,) = json.loads(r.stdout)
        assert entry["Endpoint"] == m.endpoint
        assert entry["HashKV"]["header"]["revision"] == 2
        assert isinstance(entry["HashKV"]["hash"], int)


def test_hashkv_is_stable_and_changes_with_the_data(etcdpy_member: Member) -> None:
    ep = [etcdpy_member.endpoint]

    def hashkv(*args: str) -> int:
        (entry,) = json.loads(etcdctl(ep, "endpoint", "hashkv", "-w", "json", *args).stdout)
        return int(entry["HashKV"]["hash"])

    etcdctl(ep, "put", "k", "v1")
    first = hashkv()
    assert hashkv() == first
    etcdctl(ep, "put", "k", "v2")
    assert hashkv() != first
    assert hashkv("--rev", "2") == first

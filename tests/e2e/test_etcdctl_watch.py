"""`etcdctl watch` against etcdpy, compared line by line with real etcd 3.5.

Watchers run as background etcdctl processes; a test writes, then reads their output with a
deadline. A watch that must see writes made "from now on" is made in interactive mode and
confirmed with `progress`: the server answers a progress request only once every watcher on
the stream is created and synced, so nothing written after that answer can be missed.
"""

from __future__ import annotations

import json

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.background import background
from tests.e2e.harness import Member, etcdctl, single_member
from tests.e2e.normalise import IdMap, normalise_json, normalise_text
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e

END = "END"  # the value of each scenario's last write: a reader stops at it


def _history(pair: Pair) -> None:
    """Revisions 2..9 on both servers: puts, a delete, a txn writing two keys."""
    for args in (("put", "a", "1"), ("put", "a", "2"), ("put", "b", "1"), ("del", "a"),
                 ("put", "ab", "x"), ("put", "a", "3")):
        pair.same(*args)
    pair.same("txn", input="\nput a 4\nput b 2\n\n\n")
    pair.same("put", "c", "1")


def _json_lines(lines: list[str], ids: IdMap) -> list[object]:
    return [normalise_json(json.loads(line), ids) if line.startswith("{") else line
            for line in lines]


def _watch_both(pair: Pair, *args: str, until: str = END) -> list[str]:
    """Run `etcdctl watch ARGS` on both (history must end with a write of `until`); the lines
    up to it must be identical. Returns etcd's lines."""
    outputs = []
    for m in pair.members:
        with background([m.endpoint], "watch", *args) as w:
            outputs.append(w.until(lambda line: until in line))
    want, got = outputs
    if "json" in args:
        assert _json_lines(got, IdMap()) == _json_lines(want, IdMap())
    else:
        assert [normalise_text(line, IdMap()) for line in got] == [
            normalise_text(line, IdMap()) for line in want]
    return want


def test_watch_replays_history_with_every_flag(pair: Pair) -> None:
    _history(pair)
    pair.same("put", "a", END)
    pair.same("put", "b", END)
    lines = _watch_both(pair, "--rev", "2", "a")
    assert lines[:6] == ["PUT", "a", "1", "PUT", "a", "2"]
    assert lines[6:9] == ["DELETE", "a", ""]
    _watch_both(pair, "--rev", "2", "--prev-kv", "a")
    _watch_both(pair, "--rev", "4", "--prefix", "a")
    _watch_both(pair, "--rev", "1", "--prefix", "")
    _watch_both(pair, "--rev", "3", "a", "c")  # a range [a, c)
    _watch_both(pair, "--rev", "2", "--prefix", "--prev-kv", "-w", "json", "a",
                until='"RU5E"')  # base64 of END
    _watch_both(pair, "--rev", "7", "-w", "fields", "b")


def test_txn_events_arrive_in_one_response(pair: Pair) -> None:
    """A txn's events share one revision and one watch response (atomicity)."""
    _history(pair)
    pair.same("put", "a", END)
    lines = _watch_both(pair, "--rev", "8", "--prefix", "-w", "json", "", until='"RU5E"')
    revisions = [[ev["kv"]["mod_revision"] for ev in json.loads(line)["Events"]]
                 for line in lines]
    assert [rs.count(8) for rs in revisions if 8 in rs] == [2]


def test_watch_interactive_progress_and_live_events(pair: Pair) -> None:
    _history(pair)
    outputs = []
    for m in pair.members:
        ep = [m.endpoint]
        with background(ep, "watch", "-i", interactive=True) as w:
            w.send("watch a\n")
            w.send("progress\n")
            got = w.lines(1)
            etcdctl(ep, "put", "a", "live")
            etcdctl(ep, "del", "a")
            got += w.lines(6)
            w.send("watch --prefix --prev-kv b\n")
            w.send("progress\n")
            got += w.lines(2)  # etcdctl prints a progress notification once per watcher
            etcdctl(ep, "put", "b", "live")
            got += w.lines(5)
            w.send("watch --rev 2 c\n")  # history of c: one put at revision 9
            got += w.lines(3)
            w.send("progress\n")
            got += w.lines(3)
            w.send("bogus\n")
            got += w.lines(1)
            outputs.append(got)
    want, got = outputs
    assert got == want
    assert want[0] == "progress notify: 9"
    assert want[7:9] == ["progress notify: 11"] * 2
    assert want[-1] == "Invalid command bogus (only support watch)"


def test_watch_from_compacted_revision_is_cancelled(pair: Pair) -> None:
    _history(pair)
    pair.same("compaction", "5")
    outcomes = []
    for m in pair.members:
        with background([m.endpoint], "watch", "--rev", "3", "a") as w:
            outcomes.append(w.to_exit())
    want, got = outcomes
    assert got == want
    assert want[1] != 0
    assert "required revision has been compacted" in want[0][0]
    # At exactly the compaction revision the history is still there.
    pair.same("put", "a", END)
    _watch_both(pair, "--rev", "5", "--prefix", "a")


def test_watch_runs_a_command_per_event(pair: Pair) -> None:
    _history(pair)
    pair.same("put", "a", END)
    script = 'echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE @$ETCD_WATCH_REVISION"'
    lines = _watch_both(pair, "--rev", "5", "a", "--", "sh", "-c", script,
                        until=f'="{END}" @')
    # etcdctl quotes the values it exports and gives the response's header revision.
    assert '"DELETE" "a"="" @10' in lines


def test_watch_progress_notify_is_periodic(tmp_path_factory: pytest.TempPathFactory) -> None:
    member = single_member("etcdpy", tmp_path_factory.mktemp("pn"),
                           extra_args=["--experimental-watch-progress-notify-interval", "200ms"])
    member.start()
    try:
        member.wait_serving()
        with background([member.endpoint], "watch", "--progress-notify", "idle") as w:
            assert w.lines(2, timeout_s=5) == ["progress notify: 1"] * 2
    finally:
        member.stop()


def test_many_events_in_order_without_gaps(etcdpy_member: Member) -> None:
    """300 puts from a gRPC client; the watcher sees each revision once, in order."""
    ep = etcdpy_member.endpoint
    with grpc.insecure_channel(ep) as channel:
        kv = pb_grpc.KVStub(channel)
        start = kv.Range(pb.RangeRequest(key=b"w/", range_end=b"w0")).header.revision + 1
        with background([ep], "watch", "--prefix", "--rev", str(start), "-w", "json", "w/") as w:
            for i in range(300):
                kv.Put(pb.PutRequest(key=b"w/%d" % (i % 7), value=b"%d" % i))
            revisions: list[int] = []
            while len(revisions) < 300:
                resp = json.loads(w.lines(1)[0])
                revisions += [ev["kv"]["mod_revision"] for ev in resp["Events"]]
    assert revisions == list(range(start, start + 300))

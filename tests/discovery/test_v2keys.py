"""`--enable-v2`: the v2 keys API subset discovery uses, request for request against etcd 3.5.1
with `--enable-v2` (bodies compared with the indices taken out, since the two stores count
differently; the indices are then checked for what clients rely on)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import FAST_TIMING, Cluster
from tests.e2e.harness import Member, single_member, start_all

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
INDEX_FIELDS = ("modifiedIndex", "createdIndex", "index", "expiration")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Member, Member]]:
    base = tmp_path_factory.mktemp("v2keys")
    ours = single_member("etcdpy", base, extra_args=["--enable-v2"])
    theirs = single_member("etcd", base, extra_args=["--enable-v2"])
    start_all([ours, theirs])
    try:
        yield ours, theirs
    finally:
        ours.stop()
        theirs.stop()


def call(member: Member, method: str, path: str, form: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, dict[str, Any], int]:
    """(status, JSON body, X-Etcd-Index)."""
    data = None
    headers = {}
    if form is not None:
        data = "&".join(f"{k}={v}" for k, v in form.items()).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(f"{member.client_url}/v2/keys{path}", data=data,
                                     method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, body, index = resp.status, resp.read(), resp.headers.get("X-Etcd-Index")
    except urllib.error.HTTPError as err:
        status, body, index = err.code, err.read(), err.headers.get("X-Etcd-Index")
    return status, json.loads(body), int(index or 0)


def strip(obj: Any) -> Any:
    """Without indices, and children in key order (etcd lists them in map order unless
    asked for `sorted=true`)."""
    if isinstance(obj, dict):
        out = {k: strip(v) for k, v in obj.items() if k not in INDEX_FIELDS}
        if "nodes" in out:
            out["nodes"] = sorted(out["nodes"], key=lambda n: n.get("key", ""))
        return out
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


SEQUENCE: list[tuple[str, str, dict[str, str] | None]] = [
    ("GET", "/d/tok/_config/size", None),
    ("PUT", "/d/tok/_config/size", {"value": "3"}),
    ("PUT", "/d/tok/a1?prevExist=false", {"value": "m1=http://10.0.0.1:2380"}),
    ("PUT", "/d/tok/a1?prevExist=false", {"value": "m1=http://10.0.0.1:2380"}),
    ("PUT", "/d/tok/b2?prevExist=false", {"value": "m2=http://10.0.0.2:2380"}),
    ("GET", "/d/tok?quorum=false&recursive=false&sorted=false", None),
    ("GET", "/d?recursive=true&sorted=true", None),
    ("GET", "/d", None),
    ("GET", "/d/tok/_config/size", None),
    ("PUT", "/d/tok/a1", {"value": "changed"}),
    ("PUT", "/d/tok/a1?prevExist=true", {"value": "again"}),
    ("PUT", "/d/tok/zz?prevExist=true", {"value": "x"}),
    ("PUT", "/d/tok/a1?prevValue=wrong", {"value": "x"}),
    ("PUT", "/d/tok/a1/below", {"value": "x"}),
    ("PUT", "/d/tok", {"value": "x"}),
    ("PUT", "/d/tok/t?ttl=abc", {"value": "x"}),
    ("PUT", "/d/tok/t?ttl=30", {"value": "x"}),
    ("PUT", "/e?dir=true", None),
    ("GET", "/e", None),
    ("DELETE", "/d/tok", None),
    ("DELETE", "/d/tok/a1", None),
    ("DELETE", "/d?recursive=true", None),
    ("GET", "/d/tok/a1", None),
    ("GET", "/d/tok/a1?wait=true&waitIndex=abc", None),
    ("PUT", "/z/f", {"value": "1"}),
    ("PUT", "/z/f?dir=true&prevExist=false", None),
    ("PUT", "/z/f?dir=true", None),
    ("PUT", "/z/dd?dir=true", None),
    ("PUT", "/z/dd?dir=true", None),
    ("PUT", "/z/dd?dir=true&prevExist=false", None),
    ("PUT", "/z/dd?prevExist=false", {"value": "1"}),
    ("PUT", "/z/dd/in", {"value": "1"}),
    ("DELETE", "/z/dd", None),
    ("DELETE", "/z/dd?dir=true", None),
    ("DELETE", "/z/dd?recursive=true", None),
    ("GET", "/z?recursive=true", None),
]


def test_same_answers_as_etcd(pair: tuple[Member, Member]) -> None:
    ours, theirs = pair
    for method, path, form in SEQUENCE:
        mine, real = call(ours, method, path, form), call(theirs, method, path, form)
        assert (mine[0], strip(mine[1])) == (real[0], strip(real[1])), (method, path)


def test_indices_are_revisions_and_only_grow(pair: tuple[Member, Member]) -> None:
    ours, _ = pair
    status, body, index = call(ours, "PUT", "/ix/a?prevExist=false", {"value": "1"})
    assert status == 201 and body["node"]["createdIndex"] == body["node"]["modifiedIndex"] == index
    status, body, later = call(ours, "PUT", "/ix/a", {"value": "2"})
    assert status == 200 and body["node"]["createdIndex"] == index
    assert body["node"]["modifiedIndex"] == later > index
    assert body["prevNode"]["value"] == "1"
    _, listing, now = call(ours, "GET", "/ix")
    assert now == later and listing["node"]["nodes"][0]["modifiedIndex"] == later


@pytest.mark.parametrize("which", [0, 1], ids=["etcdpy", "etcd"])
def test_wait_returns_the_next_change_and_a_past_one(pair: tuple[Member, Member],
                                                     which: int) -> None:
    member = pair[which]
    _, created, first = call(member, "PUT", "/w/dir/k1?prevExist=false", {"value": "v1"})
    # waitIndex in the past: the change at that index, at once.
    status, event, _ = call(member, "GET", f"/w/dir?wait=true&recursive=true&waitIndex={first}")
    assert status == 200 and event["action"] == "create"
    assert event["node"]["key"] == "/w/dir/k1" and event["node"]["createdIndex"] == first
    # No waitIndex: the next change, which happens while the request waits.
    got: list[tuple[int, dict[str, Any], int]] = []
    waiter = threading.Thread(target=lambda: got.append(
        call(member, "GET", "/w/dir/k2?wait=true", timeout=30)))
    waiter.start()
    # Keep writing until the waiter has seen one of the writes (it may register late).
    for attempt in range(50):
        call(member, "PUT", "/w/dir/k2", {"value": f"v{attempt}"})
        waiter.join(timeout=0.2)
        if got:
            break
    assert got, "the wait never returned"
    status, event, _ = got[0]
    assert status == 200 and event["node"]["key"] == "/w/dir/k2"
    assert event["node"]["value"].startswith("v") and event["action"] in ("create", "set")


def test_ttl_is_reported(pair: tuple[Member, Member]) -> None:
    for member in pair:
        _, body, _ = call(member, "PUT", "/ttl/k?ttl=60", {"value": "x"})
        assert body["node"]["ttl"] == 60 and body["node"]["expiration"].endswith("Z")
        _, got, _ = call(member, "GET", "/ttl/k")
        assert 0 < got["node"]["ttl"] <= 60


def test_without_enable_v2_there_is_no_v2_api(tmp_path: Path) -> None:
    member = single_member("etcdpy", tmp_path)
    start_all([member])
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{member.client_url}/v2/keys/", timeout=5)
        assert err.value.code == 404
    finally:
        member.stop()


def test_a_three_member_registry_replicates_v2_keys(tmp_path: Path) -> None:
    """A registration made through one member is listed by, and wakes a wait on, another."""
    cluster = Cluster(tmp_path, extra_args=["--enable-v2", *FAST_TIMING])
    cluster.bootstrap(3)
    try:
        a, b, c = cluster.members
        got: list[tuple[int, dict[str, Any], int]] = []
        _, _, index = call(b, "GET", "/")
        waiter = threading.Thread(target=lambda: got.append(call(
            c, "GET", f"/reg/tok?wait=true&recursive=true&waitIndex={index + 1}", timeout=30)))
        waiter.start()
        status, created, _ = call(a, "PUT", "/reg/tok/1a?prevExist=false",
                                  {"value": "m1=http://10.0.0.1:2380"})
        assert status == 201
        waiter.join(timeout=30)
        assert got and got[0][1]["node"] == created["node"]
        _, listing, _ = call(b, "GET", "/reg/tok")
        assert [n["key"] for n in listing["node"]["nodes"]] == ["/reg/tok/1a"]
        status, again, _ = call(c, "PUT", "/reg/tok/1a?prevExist=false", {"value": "x"})
        assert status == 412 and again["errorCode"] == 105
    finally:
        cluster.stop_all()

"""The JSON gateway under /v3/, compared with real etcd 3.5: the same curl requests to both,
the same HTTP statuses and the same JSON once ids and terms are normalised."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.e2e.gateway_client import Reply, curl, curl_stream, normalise
from tests.e2e.normalise import IdMap
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# (path, body, how to compare): "json" = the whole normalised answer, "error" = status, code
# and (for etcd's own messages) the message, "status" = the HTTP status and headers only.
STEPS: list[tuple[str, str, str]] = [
    ("/v3/kv/put", f'{{"key":"{b64("foo")}","value":"{b64("bar")}"}}', "json"),
    ("/v3/kv/put", f'{{"key":"{b64("foo")}","value":"{b64("baz")}","prev_kv":true}}', "json"),
    ("/v3/kv/put", f'{{"key":"{b64("fop")}","value":"{b64("1")}"}}', "json"),
    ("/v3/kv/range", f'{{"key":"{b64("foo")}"}}', "json"),
    ("/v3/kv/range", f'{{"key":"{b64("fo")}","range_end":"{b64("fp")}","limit":1}}', "json"),
    ("/v3/kv/range", f'{{"key":"{b64("fo")}","range_end":"{b64("fp")}","count_only":true}}',
     "json"),
    ("/v3/kv/range", f'{{"key":"{b64("foo")}","serializable":true,"keys_only":true}}', "json"),
    ("/v3/kv/range", f'{{"key":"{b64("nothing")}"}}', "json"),
    ("/v3/kv/txn",
     f'{{"compare":[{{"key":"{b64("foo")}","target":"VALUE","value":"{b64("baz")}"}}],'
     f'"success":[{{"request_put":{{"key":"{b64("t")}","value":"{b64("yes")}"}}}}],'
     f'"failure":[{{"request_range":{{"key":"{b64("foo")}"}}}}]}}', "json"),
    ("/v3/kv/txn",
     f'{{"compare":[{{"key":"{b64("foo")}","target":"VERSION","result":"GREATER",'
     f'"version":"5"}}],"failure":[{{"request_range":{{"key":"{b64("foo")}"}}}}]}}', "json"),
    ("/v3/kv/deleterange", f'{{"key":"{b64("fop")}","prev_kv":true}}', "json"),
    ("/v3/kv/range", f'{{"key":"{b64("foo")}","revision":"1000"}}', "error"),
    ("/v3/kv/compaction", '{"revision":"3"}', "json"),
    ("/v3/kv/range", f'{{"key":"{b64("foo")}","revision":"2"}}', "error"),
    ("/v3/kv/put", '{"value":"eA=="}', "error"),
    ("/v3/lease/grant", '{"TTL":"60","ID":"4242"}', "json"),
    ("/v3/kv/put", f'{{"key":"{b64("leased")}","value":"eA==","lease":"4242"}}', "json"),
    ("/v3/lease/timetolive", '{"ID":"4242","keys":true}', "ttl"),
    ("/v3/kv/lease/timetolive", '{"ID":"4242"}', "ttl"),
    ("/v3/lease/leases", "{}", "json"),
    ("/v3/lease/revoke", '{"ID":"4242"}', "json"),
    ("/v3/lease/revoke", '{"ID":"4242"}', "error"),
    ("/v3/kv/lease/revoke", '{"ID":"77"}', "error"),
    ("/v3beta/kv/range", f'{{"key":"{b64("foo")}"}}', "json"),
    ("/v3alpha/kv/range", f'{{"key":"{b64("leased")}"}}', "text"),
    ("/v3/kv/range", '{"key":', "status"),
    ("/v3/kv/range", '{"no_such_field":1}', "status"),
    ("/v3/kv/nowhere", "{}", "text"),
    ("/v3/maintenance/hashkv", '{"revision":"0"}', "text"),
    ("/v3/maintenance/alarm", "{}", "json"),
]


def compare(path: str, body: str, how: str, pair: Pair, ids: IdMap) -> None:
    got: dict[str, Reply] = {}
    for m in pair.members:
        got[m.kind] = curl(f"{m.client_url}{path}", body)
    want, ours = got["etcd"], got["etcdpy"]
    where = f"{path} {body}"
    assert ours.status == want.status, (where, want, ours)
    assert ours.headers.get("access-control-allow-origin") == "*", where
    assert ours.headers.get("content-type") == want.headers.get("content-type"), where
    if how == "json":
        assert normalise(ours.json(), ids) == normalise(want.json(), ids), where
    elif how == "ttl":  # the remaining TTL may differ by the second that passed
        w, o = want.json(), ours.json()
        assert abs(int(w["TTL"]) - int(o["TTL"])) <= 1, where
        w.pop("TTL"), o.pop("TTL")
        assert normalise(o, ids) == normalise(w, ids), where
    elif how == "error":
        assert ours.json() == want.json(), where
    elif how == "text":
        assert ours.body == want.body, where
    else:
        assert set(ours.json()) == set(want.json()), where


def test_gateway_answers_like_etcd(pair: Pair) -> None:
    ids = IdMap()
    for path, body, how in STEPS:
        compare(path, body, how, pair, ids)


def test_gateway_methods_and_cors_like_etcd(pair: Pair) -> None:
    for method in ("GET", "OPTIONS", "PUT"):
        replies = {m.kind: curl(f"{m.client_url}/v3/kv/range", None, method)
                   for m in pair.members}
        assert replies["etcdpy"].status == replies["etcd"].status, method
        assert replies["etcdpy"].body == replies["etcd"].body, method
        for name in ("access-control-allow-methods", "access-control-allow-headers"):
            assert replies["etcdpy"].headers[name] == replies["etcd"].headers[name]


def _events(results: list[Any]) -> list[Any]:
    return [ev for r in results for ev in r["result"].get("events", [])]


def test_gateway_watch_streams_results_like_etcd(pair: Pair) -> None:
    for m in pair.members:
        for value in ("a", "b", "c"):
            curl(f"{m.client_url}/v3/kv/put", f'{{"key":"{b64("w")}","value":"{b64(value)}"}}')
    ids = IdMap()
    body = (f'{{"create_request":{{"key":"{b64("w")}","start_revision":"2"}}}}'
            f'{{"create_request":{{"key":"{b64("other")}"}}}}')
    streams = {m.kind: curl_stream(f"{m.client_url}/v3/watch", body, 3) for m in pair.members}
    etcd, ours = streams["etcd"], streams["etcdpy"]
    assert all(set(r) == {"result"} for r in ours)
    # Whether a watch's catch-up events come before the next watch's `created` is timing
    # (etcd syncs unsynced watchers every 100 ms): compare what was sent, not the order.
    assert sorted(r["result"].get("created", False) for r in ours) == sorted(
        r["result"].get("created", False) for r in etcd)
    assert normalise(_events(ours), ids) == normalise(_events(etcd), ids)
    assert [e["kv"]["value"] for e in _events(ours)] == [b64(v) for v in "abc"]


def test_gateway_lease_keepalive_streams_one_result_per_request(pair: Pair) -> None:
    ids = IdMap()
    answers = {}
    for m in pair.members:
        curl(f"{m.client_url}/v3/lease/grant", '{"TTL":"30","ID":"99"}')
        answers[m.kind] = curl_stream(f"{m.client_url}/v3/lease/keepalive",
                                      '{"ID":"99"}{"ID":"12345"}', 10)
    assert normalise(answers["etcdpy"], ids) == normalise(answers["etcd"], ids)
    assert [r["result"].get("TTL") for r in answers["etcdpy"]] == ["30", None]


def test_gateway_cluster_and_maintenance(pair: Pair) -> None:
    replies = {m.kind: curl(f"{m.client_url}/v3/cluster/member/list", "{}")
               for m in pair.members}
    ours, etcd = replies["etcdpy"].json(), replies["etcd"].json()
    # Each server has its own member ID: one IdMap each names both "<id1>".
    assert normalise(ours["members"], IdMap()) == normalise(etcd["members"], IdMap())
    status = {m.kind: curl(f"{m.client_url}/v3/maintenance/status", "{}").json()
              for m in pair.members}
    # etcdpy reports the newer server version and 3.5.x's extra dbSizeQuota field.
    assert set(status["etcd"]) <= set(status["etcdpy"])
    assert status["etcdpy"]["leader"] == ours["header"]["member_id"]

"""python-etcd3 scenarios, run as `python -m tests.e2e.clients.etcd3_scenarios HOST:PORT NAME`.

python-etcd3 0.12 ships protobuf code generated for protobuf 3, which protobuf 7 loads only with
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python; that setting is process-wide and would slow the
rest of the test run, so each scenario runs in its own process. A scenario prints one JSON
object: what the client saw, with nothing server-specific in it (no ids, no terms), so the
test can compare etcdpy's answer with real etcd's and check the values it expects.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import etcd3  # type: ignore[import-untyped]
import etcd3.events  # type: ignore[import-untyped]
import etcd3.locks  # type: ignore[import-untyped]
import grpc
import tenacity

WAIT_S = 10.0  # every wait in a scenario is bounded by this


def _tenacity_compat() -> None:
    """python-etcd3 0.12's Lock.acquire passes tenacity a wait function with the old
    (attempt, delay) signature; tenacity >= 5 calls it with one RetryCallState, so a contended
    acquire dies with a TypeError before it reaches the server. Adapt the call, nothing else:
    the lock recipe (Txn, Range, Watch) still runs exactly as python-etcd3 wrote it."""
    original = tenacity.retry

    def retry(*args: Any, wait: Any = None, **kwargs: Any) -> Any:
        if wait is not None:
            kwargs["wait"] = lambda rs: wait(rs.attempt_number, rs.seconds_since_start or 0.0)
        return original(*args, **kwargs)

    etcd3.locks.tenacity = types.SimpleNamespace(**{**vars(tenacity), "retry": retry})


_tenacity_compat()


def _kv(value: bytes | None, meta: Any) -> list[Any] | None:
    if meta is None:
        return None
    return [meta.key.decode(), (value or b"").decode(), meta.create_revision, meta.mod_revision,
            meta.version, meta.lease_id != 0]


def _pbkv(kv: Any) -> list[Any]:
    """A raw mvccpb.KeyValue (as in prev_kv fields)."""
    return [kv.key.decode(), kv.value.decode(), kv.create_revision, kv.mod_revision, kv.version,
            kv.lease != 0]


def kv(c: etcd3.Etcd3Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["put"] = c.put("/app/a", "1").header.revision
    c.put("/app/b", "2")
    c.put("/app/c", "3")
    c.put("/other", "x")
    out["put_prev"] = [_pbkv(c.put("/app/a", "one", prev_kv=True).prev_kv),
                       _pbkv(c.put("/app/a", "uno", prev_kv=True).prev_kv)]
    out["get"] = _kv(*c.get("/app/a"))
    out["get_missing"] = _kv(*c.get("/nope"))
    out["prefix"] = [_kv(v, m) for v, m in c.get_prefix("/app/")]
    out["prefix_desc_create"] = [m.key.decode() for _, m in c.get_prefix(
        "/app/", sort_order="descend", sort_target="create")]
    out["prefix_keys_only"] = [[v.decode(), m.key.decode()]
                               for v, m in c.get_prefix("/app/", keys_only=True)]
    out["range"] = [m.key.decode() for _, m in c.get_range("/app/b", "/other")]
    out["all"] = [m.key.decode() for _, m in c.get_all()]
    out["replace_ok"] = c.replace("/app/b", "2", "two")
    out["replace_bad"] = c.replace("/app/b", "2", "deux")
    out["pine_new"] = c.put_if_not_exists("/app/d", "4")
    out["pine_old"] = c.put_if_not_exists("/app/d", "5")
    out["delete"] = c.delete("/app/c")
    out["delete_missing"] = c.delete("/app/c")
    out["delete_prev"] = _pbkv(c.delete("/app/d", prev_kv=True, return_response=True)
                               .prev_kvs[0])
    out["delete_prefix"] = c.delete_prefix("/app/").deleted
    out["after"] = [m.key.decode() for _, m in c.get_all()]
    rev = c.get_response("/other").header.revision
    out["rev"] = rev
    c.compact(rev - 1)
    try:
        c.kvstub.Range(etcd3.etcdrpc.RangeRequest(key=b"/other", revision=rev - 2), WAIT_S)
        out["compacted"] = None
    except grpc.RpcError as error:
        out["compacted"] = [error.code().name, error.details()]
    return out


def txn(c: etcd3.Etcd3Client) -> dict[str, Any]:
    t = c.transactions
    c.put("k", "v")
    c.put("n", "1")
    ok, responses = c.transaction(
        compare=[t.value("k") == "v", t.version("k") > 0, t.create("missing") == 0],
        success=[t.put("k", "w"), t.get("k"), t.delete("n"), t.get("n")],
        failure=[t.put("failed", "1")],
    )
    out: dict[str, Any] = {"first": ok}
    out["first_responses"] = [
        [_kv(v, m) for v, m in r] if isinstance(r, list) else type(r).__name__ for r in responses
    ]
    ok, responses = c.transaction(
        compare=[t.value("k") != "w", t.mod("k") < 2],
        success=[t.put("never", "1")],
        failure=[t.get("k"), t.put("else", "1")],
    )
    out["second"] = ok
    out["second_responses"] = [
        [_kv(v, m) for v, m in r] if isinstance(r, list) else type(r).__name__ for r in responses
    ]
    out["keys"] = [m.key.decode() for _, m in c.get_all()]
    return out


def lease(c: etcd3.Etcd3Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    le = c.lease(60)
    out["granted"] = le.granted_ttl
    c.put("/l/a", "1", lease=le)
    c.put("/l/b", "2", lease=le.id)
    out["keys"] = sorted(k.decode() for k in le.keys)
    out["remaining_ok"] = 0 < le.remaining_ttl <= 60
    refreshed = le.refresh()
    out["refresh_ttl"] = [r.TTL for r in refreshed]
    info = c.get_lease_info(le.id)
    out["info"] = [info.grantedTTL, 0 < info.TTL <= 60]
    out["attached"] = [_kv(v, m) for v, m in c.get_prefix("/l/")]
    le.revoke()
    out["after_revoke"] = [m.key.decode() for _, m in c.get_prefix("/l/")]
    out["revoked_ttl"] = c.get_lease_info(le.id).TTL
    out["revoked_refresh"] = [r.TTL for r in c.refresh_lease(le.id)]
    try:
        c.revoke_lease(le.id)
        out["revoke_again"] = None
    except Exception as error:  # noqa: BLE001 - the type is what we report
        out["revoke_again"] = type(error).__name__
    short = c.lease(2)
    c.put("/l/short", "x", lease=short)
    deadline = time.monotonic() + WAIT_S
    while c.get("/l/short")[0] is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    out["short_expired"] = c.get("/l/short")[0] is None
    return out


def _event(ev: Any) -> list[Any]:
    kind = "put" if isinstance(ev, etcd3.events.PutEvent) else "delete"
    return [kind, ev.key.decode(), ev.value.decode(), ev.mod_revision,
            ev.prev_value.decode() if ev.prev_value is not None else None]


def _collect(iterator: Any, n: int) -> list[list[Any]]:
    got: list[list[Any]] = []
    for ev in iterator:
        got.append(_event(ev))
        if len(got) == n:
            break
    return got


def _bounded(fn: Callable[[], Any]) -> Any:
    """Run fn in a thread and give up after WAIT_S (a watch that never delivers fails)."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()
    thread.join(WAIT_S)
    if not box:
        raise TimeoutError("no watch events within the time limit")
    return box[0]


def watch(c: etcd3.Etcd3Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    start = c.put("w/a", "0").header.revision
    events, cancel = c.watch("w/a", start_revision=start)
    c.put("w/a", "1")
    c.delete("w/a")
    out["key"] = _bounded(lambda: _collect(events, 3))
    cancel()
    events, cancel = c.watch_prefix("w/", start_revision=start, prev_kv=True)
    c.put("w/b", "2")
    c.put("w/a", "3")
    out["prefix"] = _bounded(lambda: _collect(events, 5))
    cancel()
    got: list[list[Any]] = []
    done = threading.Event()

    def callback(response: Any) -> None:
        got.extend(_event(ev) for ev in response.events)
        if len(got) >= 2:
            done.set()

    watch_id = c.add_watch_prefix_callback("w/", callback, start_revision=start + 3)
    c.put("w/c", "4")
    done.wait(WAIT_S)
    c.cancel_watch(watch_id)
    out["callback"] = got[:2]
    out["once"] = _event(c.watch_once("w/a", timeout=WAIT_S, start_revision=start + 1))
    try:
        c.watch_once("w/silent", timeout=0.5)
        out["once_timeout"] = None
    except etcd3.exceptions.WatchTimedOut as error:
        out["once_timeout"] = type(error).__name__
    return out


def lock(c: etcd3.Etcd3Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    first = c.lock("job", ttl=30)
    out["first"] = first.acquire(timeout=WAIT_S)
    out["held"] = first.is_acquired()
    second = c.lock("job", ttl=30)
    out["second_while_held"] = second.acquire(timeout=1)
    out["lock_key"] = c.get("/locks/job")[1].key.decode()
    released: list[bool] = []
    waiter = threading.Thread(target=lambda: released.append(second.acquire(timeout=WAIT_S)))
    waiter.start()
    time.sleep(0.3)  # let the waiter start watching before the release (either order works)
    out["release"] = first.release()
    waiter.join(WAIT_S + 1)
    out["second_after_release"] = released
    out["second_held"] = second.is_acquired()
    second.refresh()
    out["release_second"] = second.release()
    out["release_twice"] = second.release()
    with c.lock("ctx", ttl=10) as held:
        out["context"] = held.is_acquired()
    out["context_after"] = c.get("/locks/ctx")[0]
    return out


def cluster(c: etcd3.Etcd3Client) -> dict[str, Any]:
    members = list(c.members)
    status = c.status()
    (me,) = members
    return {
        "members": [[m.name, list(m.peer_urls), list(m.client_urls)] for m in members],
        "leader_is_me": status.leader.id == me.id,
        "version": status.version.split(".")[:2],
        "db_size_positive": status.db_size > 0,
        "raft_index_positive": status.raft_index > 0,
        "alarms": list(c.list_alarms()),
    }


SCENARIOS: dict[str, Callable[[etcd3.Etcd3Client], dict[str, Any]]] = {
    f.__name__: f for f in (kv, txn, lease, watch, lock, cluster)
}


def main(argv: list[str]) -> int:
    endpoint, name = argv
    host, port = endpoint.rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port), timeout=WAIT_S)
    try:
        print(json.dumps(SCENARIOS[name](client), sort_keys=True))
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

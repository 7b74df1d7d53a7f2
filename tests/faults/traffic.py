"""Recorded client traffic during a fault run: sequential clients and reconnecting watchers.

Each client is one thread with one gRPC channel to one member at a time (etcdpy's generated
stubs), sending one request at a time over a small key space and appending an `Operation` per
request to the shared `History`: invocation and completion time, the request and what came back.

Outcome rules (what the checker may assume):
* a response: the operation took effect (writes) or observed the state (reads) in [call, ret];
* an error that etcd raises before or instead of applying (invalid argument, lease not found, ...)
  is a `definite_failure`: no effect. A failed read is a definite failure too: it had no effect;
* UNAVAILABLE with "failed to connect" means the request never left this process: no effect;
* anything else on a write (deadline, unavailable, lost connection) is unknown: `ret = inf`, it
  may take effect at any later time. The client then continues under a fresh client number, as
  Jepsen does with a crashed process, so no client has two operations in flight.

Most clients are pinned to one member, as in etcd's robustness tests and Jepsen, so a member
cut off from the others keeps getting requests (that is how stale reads are seen); the others
move to the next member after a failure, as a multi-endpoint client does.

Watchers stream Watch responses from several start revisions, with prev_kv and progress notify
on some, and resume after a broken stream from the revision after the last one they saw; each
stream is its own `WatchRecord`.
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy._pb.mvccpb import kv_pb2
from tests.faults.history import (
    EventType,
    History,
    KeyValue,
    Operation,
    OpKind,
    Request,
    Response,
    WatchEvent,
    WatchRecord,
    WatchResponse,
)

DEADLINE_S = 1.5
LEASE_TTL_S = 3600  # outlives any run: leases end only by revoke, which the model knows
KEY_PREFIX = "k"
WATCH_END = "l"  # [k, l) covers every key of the key space
CLIENT_STRIDE = 1000  # client numbers: index + STRIDE * generation

# Errors that etcd returns without the request having taken effect.
DEFINITE_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
})
NOT_SENT = "failed to connect"  # gRPC's UNAVAILABLE detail when no connection was ever made
BACKOFF_S = 0.2  # after a failure: a dead member fails fast, do not spin on it


def keys(count: int) -> tuple[str, ...]:
    return tuple(f"{KEY_PREFIX}{i}" for i in range(count))


@dataclass(frozen=True, slots=True)
class Mix:
    """Relative weights of the request kinds a client sends."""

    get: int = 20
    stale_get: int = 10
    range: int = 6
    stale_range: int = 4
    put: int = 25
    delete: int = 6
    cas: int = 12
    lease_grant: int = 3
    lease_put: int = 6
    lease_revoke: int = 3

    def choices(self) -> tuple[list[str], list[int]]:
        names = list(self.__dataclass_fields__)
        return names, [getattr(self, n) for n in names]


class Recorder:
    """The history being written by every thread; appends are serialised by one lock."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.lock = threading.Lock()
        self.max_revision = 0  # highest header revision any response carried

    def add(self, op: Operation) -> None:
        with self.lock:
            self.history.operations.append(op)
            if op.response is not None:
                self.max_revision = max(self.max_revision, op.response.revision)

    def add_watch(self, record: WatchRecord) -> None:
        with self.lock:
            self.history.watches.append(record)


def _kv(kv: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(kv.key.decode(), kv.value.decode(), kv.mod_revision, kv.create_revision,
                    kv.version, kv.lease)


class Client:
    """One sequential client; `run` loops until `stop` is set or `max_ops` were sent."""

    def __init__(self, index: int, endpoints: Sequence[str], key_space: Sequence[str],
                 mix: Mix, recorder: Recorder, seed: int, stop: threading.Event,
                 think_s: float = 0.01, max_ops: int = 100_000, pinned: bool = False) -> None:
        assert endpoints and key_space
        self.index = index
        self.generation = 0
        self.endpoints = list(endpoints)
        self.at = index % len(self.endpoints)
        self.keys = list(key_space)
        self.mix = mix
        self.recorder = recorder
        self.rng = random.Random(seed)
        self.stop = stop
        self.think_s = think_s
        self.max_ops = max_ops
        self.pinned = pinned
        self.seq = 0
        self.mod_revisions: dict[str, int] = {}  # last mod_revision seen per key (for CAS)
        self.leases: list[int] = []  # leases this client granted (and may still exist)
        self.channel: grpc.Channel | None = None
        self.kv: rpc_pb2_grpc.KVStub | None = None
        self.lease: rpc_pb2_grpc.LeaseStub | None = None

    @property
    def client_id(self) -> int:
        return self.index + CLIENT_STRIDE * self.generation

    def _connect(self) -> None:
        if self.channel is None:
            self.channel = grpc.insecure_channel(self.endpoints[self.at])
            self.kv = rpc_pb2_grpc.KVStub(self.channel)
            self.lease = rpc_pb2_grpc.LeaseStub(self.channel)

    def _reconnect(self) -> None:
        """Move to the next member: the one we used may be down, paused or cut off.

        Under a new client number: serializable reads are only monotonic per member (a
        lagging member may serve an older revision), so each member is a session of its own.
        """
        if self.channel is not None:
            self.channel.close()
        self.channel = None
        self.at = (self.at + 1) % len(self.endpoints)
        self.generation += 1

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def run(self) -> None:
        names, weights = self.mix.choices()
        try:
            while not self.stop.is_set() and self.seq < self.max_ops:
                self._connect()
                kind = self.rng.choices(names, weights)[0]
                self.once(kind)
                self.stop.wait(self.think_s)
        finally:
            self.close()

    def _value(self) -> str:
        self.seq += 1
        return f"c{self.index}-{self.seq}"

    def request(self, kind: str) -> Request:
        key = self.rng.choice(self.keys)
        if kind in ("get", "stale_get"):
            return Request(OpKind.GET, key=key, serializable=kind == "stale_get")
        if kind in ("range", "stale_range"):
            return Request(OpKind.RANGE, key=KEY_PREFIX, range_end=WATCH_END,
                           serializable=kind == "stale_range")
        if kind == "put":
            return Request(OpKind.PUT, key=key, value=self._value())
        if kind == "delete":
            return Request(OpKind.DELETE, key=key)
        if kind == "cas":
            return Request(OpKind.CAS, key=key, value=self._value(),
                           expected_mod_revision=self.mod_revisions.get(key, 0))
        if kind == "lease_grant" or (kind in ("lease_put", "lease_revoke") and not self.leases):
            lease = (self.index + 1) << 32 | self.rng.getrandbits(31) | 1
            return Request(OpKind.LEASE_GRANT, lease=lease)
        if kind == "lease_put":
            return Request(OpKind.PUT, key=key, value=self._value(),
                           lease=self.rng.choice(self.leases))
        assert kind == "lease_revoke"
        lease = self.leases.pop(self.rng.randrange(len(self.leases)))
        return Request(OpKind.LEASE_REVOKE, lease=lease)

    def once(self, kind: str) -> Operation:
        req = self.request(kind)
        call = time.monotonic()
        try:
            resp = self.send(req)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            error = f"{code.name}: {detail}"
            is_read = req.kind in (OpKind.GET, OpKind.RANGE)
            not_sent = code == grpc.StatusCode.UNAVAILABLE and NOT_SENT in detail
            if is_read or not_sent or code in DEFINITE_CODES:
                op = Operation(self.client_id, call, time.monotonic(), req, error=error,
                               definite_failure=True)
            else:
                op = Operation(self.client_id, call, math.inf, req, error=error)
                self.generation += 1  # that one is still "in flight" forever
            if not self.pinned and code in (grpc.StatusCode.UNAVAILABLE,
                                            grpc.StatusCode.DEADLINE_EXCEEDED):
                self._reconnect()
            self.stop.wait(BACKOFF_S)
        else:
            op = Operation(self.client_id, call, time.monotonic(), req, response=resp)
            self.learn(req, resp)
        self.recorder.add(op)
        return op

    def learn(self, req: Request, resp: Response) -> None:
        for kv in resp.kvs:
            self.mod_revisions[kv.key] = kv.mod_revision
        if req.kind in (OpKind.PUT, OpKind.CAS) and resp.succeeded:
            self.mod_revisions[req.key] = resp.revision
        if req.kind == OpKind.DELETE:
            self.mod_revisions[req.key] = 0
        if req.kind == OpKind.LEASE_GRANT:
            self.leases.append(req.lease)

    def send(self, req: Request) -> Response:
        assert self.kv is not None and self.lease is not None
        t = DEADLINE_S
        if req.kind == OpKind.GET:
            r = self.kv.Range(rpc_pb2.RangeRequest(key=req.key.encode(),
                                                   serializable=req.serializable), timeout=t)
            return Response(r.header.revision, tuple(_kv(kv) for kv in r.kvs))
        if req.kind == OpKind.RANGE:
            r = self.kv.Range(rpc_pb2.RangeRequest(key=req.key.encode(),
                                                   range_end=req.range_end.encode(),
                                                   serializable=req.serializable), timeout=t)
            return Response(r.header.revision, tuple(_kv(kv) for kv in r.kvs))
        if req.kind == OpKind.PUT:
            p = self.kv.Put(rpc_pb2.PutRequest(key=req.key.encode(), value=req.value.encode(),
                                               lease=req.lease), timeout=t)
            return Response(p.header.revision)
        if req.kind == OpKind.DELETE:
            d = self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=req.key.encode()), timeout=t)
            return Response(d.header.revision, deleted=d.deleted)
        if req.kind == OpKind.CAS:
            compare = rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL,
                                      target=rpc_pb2.Compare.MOD, key=req.key.encode(),
                                      mod_revision=req.expected_mod_revision)
            put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=req.key.encode(),
                                                                    value=req.value.encode()))
            x = self.kv.Txn(rpc_pb2.TxnRequest(compare=[compare], success=[put]), timeout=t)
            return Response(x.header.revision, succeeded=x.succeeded)
        if req.kind == OpKind.LEASE_GRANT:
            g = self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=LEASE_TTL_S, ID=req.lease),
                                      timeout=t)
            return Response(g.header.revision)
        assert req.kind == OpKind.LEASE_REVOKE
        v = self.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=req.lease), timeout=t)
        return Response(v.header.revision)


@dataclass(frozen=True, slots=True)
class WatchSpec:
    start_revision: int  # 0: from now; negative: that many revisions before the newest seen
    prev_kv: bool
    progress_notify: bool


class Watcher:
    """One logical watcher: a stream at a time, resumed on another member when it breaks."""

    def __init__(self, index: int, endpoints: Sequence[str], spec: WatchSpec,
                 recorder: Recorder, stop: threading.Event) -> None:
        self.index = index
        self.endpoints = list(endpoints)
        self.at = index % len(self.endpoints)
        self.spec = spec
        self.recorder = recorder
        self.stop = stop
        self.call: grpc.Future | None = None
        self.lock = threading.Lock()

    def run(self) -> None:
        start = self.spec.start_revision
        if start < 0:
            start = max(1, self.recorder.max_revision + start)
        while not self.stop.is_set():
            record = WatchRecord(self.index, KEY_PREFIX, WATCH_END, start, self.spec.prev_kv,
                                 self.spec.progress_notify)
            self.recorder.add_watch(record)
            last = self.stream(record)
            if last:
                start = last + 1
            self.at = (self.at + 1) % len(self.endpoints)
            # A stream that got nothing (its member is down) is retried slowly, elsewhere.
            self.stop.wait(0.1 if record.responses else 0.5)

    def stream(self, record: WatchRecord) -> int:
        """Follow one stream until it breaks or we stop; the last revision it covered."""
        requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue(4)
        create = rpc_pb2.WatchCreateRequest(
            key=record.key.encode(), range_end=record.range_end.encode(),
            start_revision=record.start_revision, prev_kv=record.prev_kv,
            progress_notify=record.progress_notify)
        requests.put(rpc_pb2.WatchRequest(create_request=create))

        def feed() -> Iterator[rpc_pb2.WatchRequest]:
            while (item := requests.get()) is not None:
                yield item

        last = 0
        with grpc.insecure_channel(self.endpoints[self.at]) as channel:
            call = rpc_pb2_grpc.WatchStub(channel).Watch(feed())
            with self.lock:
                self.call = call
            if self.stop.is_set():
                call.cancel()
            try:
                for resp in call:
                    if resp.created and not resp.events:
                        continue
                    got = _watch_response(resp)
                    record.responses.append(got)
                    if got.events:
                        last = max(last, got.events[-1].kv.mod_revision)
                    elif got.progress_notify:
                        last = max(last, got.header_revision)
                    if resp.canceled:
                        break
            except grpc.RpcError:
                pass
            finally:
                requests.put(None)
                with self.lock:
                    self.call = None
        return last

    def cancel(self) -> None:
        with self.lock:
            if self.call is not None:
                self.call.cancel()


def _watch_response(resp: rpc_pb2.WatchResponse) -> WatchResponse:
    events = []
    for e in resp.events:
        kind = EventType.DELETE if e.type == kv_pb2.Event.DELETE else EventType.PUT
        prev = _kv(e.prev_kv) if e.HasField("prev_kv") else None
        events.append(WatchEvent(kind, _kv(e.kv), prev))
    is_progress = not resp.events and not resp.canceled and not resp.compact_revision
    return WatchResponse(time.monotonic(), resp.header.revision, tuple(events),
                         progress_notify=is_progress, canceled=resp.canceled,
                         compact_revision=resp.compact_revision,
                         cancel_reason=resp.cancel_reason)


class Traffic:
    """Clients and watchers over a cluster's endpoints, all writing one `History`."""

    def __init__(self, history: History, endpoints: Callable[[], list[str]], clients: int,
                 watchers: Sequence[WatchSpec], seed: int, mix: Mix = Mix(),
                 think_s: float = 0.01) -> None:
        self.recorder = Recorder(history)
        self.stop_event = threading.Event()
        eps = endpoints()
        rng = random.Random(seed)
        # Two thirds pinned to one member each, the rest roaming.
        self.clients = [Client(i, eps, history.keys, mix, self.recorder, rng.getrandbits(32),
                               self.stop_event, think_s, pinned=i < clients * 2 // 3)
                        for i in range(clients)]
        self.watchers = [Watcher(i, eps, spec, self.recorder, self.stop_event)
                         for i, spec in enumerate(watchers)]
        self.threads = [threading.Thread(target=w.run, daemon=True, name=f"client{w.index}")
                        for w in self.clients]
        self.watch_threads = [threading.Thread(target=w.run, daemon=True, name=f"watch{w.index}")
                              for w in self.watchers]
        self.final_client = CLIENT_STRIDE - 1

    def start(self) -> Traffic:
        for t in self.watch_threads[: len(self.watch_threads) // 2 + 1]:
            t.start()
        for t in self.threads:
            t.start()
        return self

    def start_late_watchers(self) -> None:
        """The rest of the watchers start later, from recent revisions."""
        for t in self.watch_threads[len(self.watch_threads) // 2 + 1 :]:
            t.start()

    def final_write(self, endpoints: Sequence[str], attempts: int = 20) -> Operation:
        """A put that must succeed once the cluster is healed; recorded like any other."""
        for attempt in range(attempts):
            c = Client(self.final_client + CLIENT_STRIDE * attempt, endpoints,
                       self.recorder.history.keys, Mix(), self.recorder, attempt,
                       self.stop_event)
            c.at = attempt % len(endpoints)
            c._connect()
            try:
                op = c.once("put")
            finally:
                c.close()
            if op.response is not None:
                return op
            time.sleep(0.5)
        raise AssertionError("the final write did not succeed after healing")

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)
        for w in self.watchers:
            w.cancel()
        for t in self.watch_threads:
            if t.is_alive():
                t.join(timeout=10)
        stuck = [t.name for t in self.threads + self.watch_threads if t.is_alive()]
        assert not stuck, f"traffic threads did not stop: {stuck}"

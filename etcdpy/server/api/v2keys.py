"""The part of etcd's v2 keys HTTP API (`/v2/keys/...`) that v2 discovery needs, served from
the replicated v3 keyspace (as etcd 3.5's `--experimental-enable-v2v3 <prefix>` did) when
`--enable-v2` is set, so that an etcdpy cluster can be the discovery service of another.

A v2 node `/a/b` is the v3 key `<prefix>/a/b`; an explicitly made directory is the marker key
`<prefix>/a/` and any key below a path makes it a directory too. createdIndex/modifiedIndex are
the v3 create/mod revisions and X-Etcd-Index the store's revision, so indices only grow, and a
wait (`?wait=true&waitIndex=N`) is a v3 watch from revision N. `ttl=` attaches a lease.
Supported: GET (one level or `recursive=true`, `wait=true` with `waitIndex`), PUT (`value`,
`ttl`, `dir`, `prevExist`, `prevValue`, `prevIndex`) and DELETE (`dir`, `recursive`),
with etcd v2's JSON field names, error codes and status codes.

Requests go through this member's own gRPC server (the same path the JSON gateway takes), so
they are linearizable writes and reads like any client's.
"""

from __future__ import annotations

import datetime
import json
import posixpath
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from etcdpy._pb.mvccpb import kv_pb2
from etcdpy.netshare import HttpRequest, HttpResponse

PATH_PREFIX = "/v2/keys"
DEFAULT_STORE_PREFIX = "/_etcdpy_v2"
REQUEST_TIMEOUT_S = 10.0
MAX_DEPTH = 64  # deepest v2 path accepted (each level costs a check on writes)

_JSON_HEADERS = (("Content-Type", "application/json"),)

# etcd v2 error codes (server/etcdserver/api/v2error), their messages and HTTP statuses.
E_KEY_NOT_FOUND = 100
E_TEST_FAILED = 101
E_NOT_FILE = 102
E_NOT_DIR = 104
E_NODE_EXIST = 105
E_DIR_NOT_EMPTY = 108
E_TTL_NAN = 202
E_INDEX_NAN = 203
E_INVALID_FIELD = 209
E_INDEX_CLEARED = 401
E_RAFT_INTERNAL = 300

_MESSAGES = {
    E_KEY_NOT_FOUND: "Key not found",
    E_TEST_FAILED: "Compare failed",
    E_NOT_FILE: "Not a file",
    E_NOT_DIR: "Not a directory",
    E_NODE_EXIST: "Key already exists",
    E_DIR_NOT_EMPTY: "Directory not empty",
    E_TTL_NAN: "The given TTL in POST form is not a number",
    E_INDEX_NAN: "The given index in POST form is not a number",
    E_INVALID_FIELD: "Invalid field",
    E_INDEX_CLEARED: "The event in requested index is outdated and cleared",
    E_RAFT_INTERNAL: "Raft Internal Error",
}
_STATUS = {
    E_KEY_NOT_FOUND: 404, E_TEST_FAILED: 412, E_NOT_FILE: 403, E_NOT_DIR: 400,
    E_NODE_EXIST: 412, E_DIR_NOT_EMPTY: 403, E_TTL_NAN: 400, E_INDEX_NAN: 400,
    E_INVALID_FIELD: 400, E_INDEX_CLEARED: 400, E_RAFT_INTERNAL: 500,
}


class V2Error(Exception):
    def __init__(self, code: int, cause: str, index: int = 0) -> None:
        assert code in _MESSAGES, code
        super().__init__(f"{code}: {_MESSAGES[code]} ({cause})")
        self.code, self.cause, self.index = code, cause, index

    def response(self, cluster_id: str) -> HttpResponse:
        body = {"errorCode": self.code, "message": _MESSAGES[self.code], "cause": self.cause,
                "index": self.index}
        headers = (*_JSON_HEADERS, ("X-Etcd-Cluster-Id", cluster_id),
                   ("X-Etcd-Index", str(self.index)))
        return HttpResponse(_STATUS[self.code], headers, _dumps(body))


def _dumps(obj: object) -> bytes:
    # Go's json.Encoder: compact, one object per line.
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _prefix_end(key: bytes) -> bytes:
    end = bytearray(key)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def clean_path(raw: str) -> str:
    """A v2 key as etcd cleans it: absolute, no `.`/`..`/double slashes, no trailing slash."""
    cleaned = posixpath.normpath("/" + raw)
    return "/" + cleaned.lstrip("/") if cleaned != "/" else "/"


@dataclass(frozen=True, slots=True)
class Params:
    """The form values of one request (query string, then a url-encoded body, as Go's
    FormValue merges them: the body wins)."""

    values: dict[str, str]

    @staticmethod
    def of(req: HttpRequest) -> Params:
        merged = {k: v[0] for k, v in req.query.items()}
        if req.body and "x-www-form-urlencoded" in req.header("content-type",
                                                              "application/x-www-form-urlencoded"):
            body = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
            merged.update({k: v[0] for k, v in body.items()})
        return Params(merged)

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def flag(self, name: str) -> bool:
        return self.values.get(name, "").lower() in ("true", "1")

    def has(self, name: str) -> bool:
        return name in self.values


class V2Keys:
    """An `etcdpy.netshare.HttpHandler` for `/v2/keys/...`."""

    def __init__(self, grpc_target: str, cluster_id: int,
                 store_prefix: str = DEFAULT_STORE_PREFIX) -> None:
        self._target = grpc_target
        self._cluster_id = f"{cluster_id:x}"
        self._prefix = store_prefix.rstrip("/")
        self._channel: grpc.aio.Channel | None = None

    @staticmethod
    def handles(path: str) -> bool:
        return path == PATH_PREFIX or path.startswith(PATH_PREFIX + "/")

    def _chan(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # --- keys ------------------------------------------------------------------------------

    def _key(self, path: str) -> bytes:
        return (self._prefix + ("" if path == "/" else path)).encode()

    def _dir_prefix(self, path: str) -> bytes:
        return self._key(path) + b"/"

    def _v2_path(self, key: bytes) -> str:
        return key.decode()[len(self._prefix):].rstrip("/") or "/"

    # --- gRPC ----------------------------------------------------------------------------

    @property
    def _kv(self) -> pb_grpc.KVStub:
        return pb_grpc.KVStub(self._chan())

    async def _range(self, key: bytes, range_end: bytes = b"",
                     count_only: bool = False) -> pb.RangeResponse:
        return await self._kv.Range(pb.RangeRequest(key=key, range_end=range_end,
                                                    count_only=count_only),
                                    timeout=REQUEST_TIMEOUT_S)

    async def _below(self, path: str) -> pb.RangeResponse:
        prefix = self._dir_prefix(path)
        return await self._range(prefix, _prefix_end(prefix))

    # --- HTTP ----------------------------------------------------------------------------

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        path = clean_path(req.path[len(PATH_PREFIX):])
        params = Params.of(req)
        try:
            if req.method == "GET":
                if params.flag("wait"):
                    return await self._wait(path, params)
                return await self._get(path, params)
            if req.method == "PUT":
                return await self._put(path, params)
            if req.method == "DELETE":
                return await self._delete(path, params)
        except V2Error as err:
            return err.response(self._cluster_id)
        except grpc.aio.AioRpcError as err:
            return V2Error(E_RAFT_INTERNAL, err.details() or "").response(self._cluster_id)
        return HttpResponse.text(405, "Method Not Allowed\n",
                                 (("Allow", "GET, PUT, DELETE"),))

    def _ok(self, status: int, body: dict[str, Any], header: pb.ResponseHeader) -> HttpResponse:
        headers = (*_JSON_HEADERS, ("X-Etcd-Cluster-Id", self._cluster_id),
                   ("X-Etcd-Index", str(header.revision)), ("X-Raft-Term", str(header.raft_term)))
        return HttpResponse(status, headers, _dumps(body))

    async def _missing(self, path: str, revision: int) -> V2Error:
        """404 naming the first missing component of `path`, as the v2 store does."""
        parts = [p for p in path.split("/") if p]
        for depth in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:depth])
            exact = await self._range(self._key(sub), count_only=True)
            if exact.count:
                continue
            below = await self._range(self._dir_prefix(sub), _prefix_end(self._dir_prefix(sub)),
                                      count_only=True)
            if not below.count:
                return V2Error(E_KEY_NOT_FOUND, sub, revision)
        return V2Error(E_KEY_NOT_FOUND, path, revision)

    # --- nodes ---------------------------------------------------------------------------

    async def _file_node(self, kv: kv_pb2.KeyValue) -> dict[str, Any]:
        node: dict[str, Any] = {"key": self._v2_path(kv.key), "value": kv.value.decode()}
        if kv.lease:
            ttl = await self._ttl(kv.lease)
            if ttl is not None:
                node.update(_expiry(ttl))
        node["modifiedIndex"] = kv.mod_revision
        node["createdIndex"] = kv.create_revision
        return node

    async def _ttl(self, lease: int) -> int | None:
        resp = await pb_grpc.LeaseStub(self._chan()).LeaseTimeToLive(
            pb.LeaseTimeToLiveRequest(ID=lease), timeout=REQUEST_TIMEOUT_S)
        return resp.TTL if resp.TTL >= 0 else None

    async def _dir_node(self, path: str, kvs: list[kv_pb2.KeyValue],
                        recursive: bool) -> dict[str, Any]:
        """The directory `path` from all keys below it (`kvs`, sorted by key)."""
        base = self._dir_prefix(path)
        marker = next((kv for kv in kvs if kv.key == base), None)
        first = min((kv.create_revision for kv in kvs), default=0)
        created = marker.create_revision if marker is not None else first
        modified = marker.mod_revision if marker is not None else first
        children: dict[str, list[kv_pb2.KeyValue]] = {}
        files: dict[str, kv_pb2.KeyValue] = {}
        for kv in kvs:
            rest = kv.key[len(base):].decode()
            if not rest:
                continue
            name, sep, _ = rest.partition("/")
            if name.startswith("_"):
                continue  # v2 hides names starting with "_" from listings
            if sep:
                children.setdefault(name, []).append(kv)
            else:
                files[name] = kv
        nodes: list[dict[str, Any]] = []
        for name in sorted(set(children) | set(files)):
            child_path = posixpath.join(path, name)
            if name in children:
                if recursive:
                    nodes.append(await self._dir_node(child_path, children[name], True))
                else:
                    sub = await self._dir_node(child_path, children[name], False)
                    sub.pop("nodes", None)
                    nodes.append(sub)
            else:
                nodes.append(await self._file_node(files[name]))
        node: dict[str, Any] = {} if path == "/" else {"key": path}
        node["dir"] = True
        if nodes:
            node["nodes"] = nodes
        if path != "/":
            node["modifiedIndex"] = modified
            node["createdIndex"] = created
        return node

    # --- GET -----------------------------------------------------------------------------

    async def _get(self, path: str, params: Params) -> HttpResponse:
        if path != "/":
            exact = await self._range(self._key(path))
            if exact.kvs:
                node = await self._file_node(exact.kvs[0])
                return self._ok(200, {"action": "get", "node": node}, exact.header)
        below = await self._below(path)
        if not below.kvs and path != "/":
            raise await self._missing(path, below.header.revision)
        node = await self._dir_node(path, list(below.kvs), params.flag("recursive"))
        return self._ok(200, {"action": "get", "node": node}, below.header)

    # --- wait ----------------------------------------------------------------------------

    async def _wait(self, path: str, params: Params) -> HttpResponse:
        text = params.get("waitIndex")
        try:
            start = int(text) if text else 0
            assert start >= 0
        except (ValueError, AssertionError):
            raise V2Error(E_INDEX_NAN, 'invalid value for "waitIndex"') from None
        current = await self._range(self._key(path), count_only=True)
        if start == 0:
            start = current.header.revision + 1
        recursive = params.flag("recursive")
        key = self._key(path)
        watch_key, watch_end = (key, _prefix_end(key)) if recursive else (key, b"")
        call = pb_grpc.WatchStub(self._chan()).Watch()
        await call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=watch_key, range_end=watch_end, start_revision=start, prev_kv=True)))
        created = await call.read()
        if created is grpc.aio.EOF or created.canceled or created.compact_revision:
            call.cancel()
            compacted = getattr(created, "compact_revision", 0)
            raise V2Error(E_INDEX_CLEARED,
                          f"the requested history has been cleared [{compacted}/{start}]",
                          current.header.revision)
        headers = (*_JSON_HEADERS, ("X-Etcd-Cluster-Id", self._cluster_id),
                   ("X-Etcd-Index", str(current.header.revision)),
                   ("X-Raft-Term", str(current.header.raft_term)))
        return HttpResponse(200, headers, self._first_event(call, path, recursive, start))

    async def _first_event(self, call: Any, path: str, recursive: bool,
                           start: int) -> AsyncIterator[bytes]:
        key = self._key(path)
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    return
                if resp.compact_revision:
                    err = V2Error(E_INDEX_CLEARED, f"the requested history has been cleared "
                                  f"[{resp.compact_revision}/{start}]")
                    yield _dumps({"errorCode": err.code, "message": _MESSAGES[err.code],
                                  "cause": err.cause, "index": err.index})
                    return
                for event in resp.events:
                    k = event.kv.key
                    # The watched range also holds sibling keys that merely share the prefix.
                    if k != key and not (recursive and k.startswith(key + b"/")):
                        continue
                    yield _dumps(await self._event_body(event))
                    return
        except grpc.aio.AioRpcError:
            return
        finally:
            call.cancel()

    async def _event_body(self, event: kv_pb2.Event) -> dict[str, Any]:
        kv = event.kv
        body: dict[str, Any] = {}
        if event.type == kv_pb2.Event.DELETE:
            body["action"] = "delete"
            node: dict[str, Any] = {"key": self._v2_path(kv.key)}
            if kv.key.endswith(b"/"):
                node["dir"] = True
            node["modifiedIndex"] = kv.mod_revision
            node["createdIndex"] = event.prev_kv.create_revision if event.HasField(
                "prev_kv") else kv.mod_revision
            body["node"] = node
        else:
            body["action"] = "create" if kv.version == 1 else "set"
            if kv.key.endswith(b"/"):
                body["node"] = {"key": self._v2_path(kv.key), "dir": True,
                                "modifiedIndex": kv.mod_revision,
                                "createdIndex": kv.create_revision}
            else:
                body["node"] = await self._file_node(kv)
        if event.HasField("prev_kv") and event.prev_kv.key and not kv.key.endswith(b"/"):
            body["prevNode"] = await self._file_node(event.prev_kv)
        return body

    # --- PUT -----------------------------------------------------------------------------

    async def _check_parents(self, path: str) -> None:
        """A file on the way to `path` makes it unreachable (v2's "Not a directory")."""
        parts = [p for p in path.split("/") if p]
        if len(parts) > MAX_DEPTH:
            raise V2Error(E_INVALID_FIELD, "key is too deep")
        for depth in range(1, len(parts)):
            sub = "/" + "/".join(parts[:depth])
            found = await self._range(self._key(sub), count_only=True)
            if found.count:
                raise V2Error(E_NOT_DIR, sub, found.header.revision)

    async def _put(self, path: str, params: Params) -> HttpResponse:
        if path == "/":
            raise V2Error(E_NOT_FILE, "/")
        ttl_text = params.get("ttl")
        try:
            ttl = int(ttl_text) if ttl_text else 0
            assert ttl >= 0
        except (ValueError, AssertionError):
            raise V2Error(E_TTL_NAN, 'invalid value for "ttl"') from None
        prev_index_text = params.get("prevIndex")
        try:
            prev_index = int(prev_index_text) if prev_index_text else 0
        except ValueError:
            raise V2Error(E_INDEX_NAN, 'invalid value for "prevIndex"') from None
        prev_exist = params.get("prevExist")
        if prev_exist not in ("", "true", "false"):
            raise V2Error(E_INVALID_FIELD, "invalid value for prevExist")
        is_dir = params.flag("dir")
        await self._check_parents(path)
        below = await self._range(self._dir_prefix(path), _prefix_end(self._dir_prefix(path)),
                                  count_only=True)
        if below.count:
            # An existing directory is neither created again nor overwritten (by a file or
            # by another directory), as in the v2 store.
            code = E_NODE_EXIST if prev_exist == "false" else E_NOT_FILE
            raise V2Error(code, path, below.header.revision)
        key = self._dir_prefix(path) if is_dir else self._key(path)
        value = b"" if is_dir else params.get("value").encode()
        lease = 0
        if ttl:
            grant = await pb_grpc.LeaseStub(self._chan()).LeaseGrant(
                pb.LeaseGrantRequest(TTL=ttl), timeout=REQUEST_TIMEOUT_S)
            lease = grant.ID
        compares: list[pb.Compare] = []
        action = "set"
        if prev_exist == "false":
            action = "create"
            compares.append(pb.Compare(key=key, target=pb.Compare.CREATE,
                                       result=pb.Compare.EQUAL, create_revision=0))
        elif prev_exist == "true":
            action = "update"
            compares.append(pb.Compare(key=key, target=pb.Compare.CREATE,
                                       result=pb.Compare.GREATER, create_revision=0))
        if params.has("prevValue"):
            action = "compareAndSwap"
            compares.append(pb.Compare(key=key, target=pb.Compare.VALUE,
                                       result=pb.Compare.EQUAL,
                                       value=params.get("prevValue").encode()))
        if prev_index:
            action = "compareAndSwap"
            compares.append(pb.Compare(key=key, target=pb.Compare.MOD,
                                       result=pb.Compare.EQUAL, mod_revision=prev_index))
        if is_dir and prev_exist == "false":
            # Creating a directory also fails where a file has the name.
            compares.append(pb.Compare(key=self._key(path), target=pb.Compare.CREATE,
                                       result=pb.Compare.EQUAL, create_revision=0))
        put = pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease,
                                                     prev_kv=True))
        get = pb.RequestOp(request_range=pb.RangeRequest(key=key))
        success = [put, get]
        if is_dir:
            # A directory replaces a file of its name (the file becomes its prevNode).
            success.insert(0, pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
                key=self._key(path), prev_kv=True)))
        txn = await self._kv.Txn(pb.TxnRequest(compare=compares, success=success,
                                               failure=[get]), timeout=REQUEST_TIMEOUT_S)
        if not txn.succeeded:
            found = txn.responses[0].response_range.kvs
            index = txn.header.revision
            if prev_exist == "false" and (found or is_dir):
                raise V2Error(E_NODE_EXIST, path, index)
            if not found:
                raise await self._missing(path, index)
            raise V2Error(E_TEST_FAILED, _compare_cause(params, prev_index, found[0]), index)
        put_resp = txn.responses[-2].response_put
        kv = txn.responses[-1].response_range.kvs[0]
        prev = put_resp.prev_kv
        if is_dir and txn.responses[0].response_delete_range.prev_kvs:
            prev = txn.responses[0].response_delete_range.prev_kvs[0]
        if is_dir:
            node: dict[str, Any] = {"key": path, "dir": True}
            if ttl:
                node.update(_expiry(ttl))
            node.update(modifiedIndex=kv.mod_revision, createdIndex=kv.create_revision)
        else:
            node = {"key": path, "value": kv.value.decode()}
            if ttl:
                node.update(_expiry(ttl))
            node.update(modifiedIndex=kv.mod_revision, createdIndex=kv.create_revision)
        body: dict[str, Any] = {"action": action, "node": node}
        if prev.key:
            body["prevNode"] = await self._file_node(prev)
        return self._ok(200 if prev.key else 201, body, txn.header)

    # --- DELETE --------------------------------------------------------------------------

    async def _delete(self, path: str, params: Params) -> HttpResponse:
        if path == "/":
            raise V2Error(E_NOT_FILE, "/")
        exact = await self._range(self._key(path))
        if exact.kvs:
            resp = await self._kv.DeleteRange(pb.DeleteRangeRequest(key=self._key(path),
                                                                    prev_kv=True),
                                              timeout=REQUEST_TIMEOUT_S)
            if not resp.prev_kvs:
                raise V2Error(E_KEY_NOT_FOUND, path, resp.header.revision)
            prev = resp.prev_kvs[0]
            body = {"action": "delete",
                    "node": {"key": path, "modifiedIndex": resp.header.revision,
                             "createdIndex": prev.create_revision},
                    "prevNode": await self._file_node(prev)}
            return self._ok(200, body, resp.header)
        below = await self._below(path)
        if not below.kvs:
            raise await self._missing(path, below.header.revision)
        if not (params.flag("dir") or params.flag("recursive")):
            raise V2Error(E_NOT_FILE, path, below.header.revision)
        has_children = any(kv.key != self._dir_prefix(path) for kv in below.kvs)
        if has_children and not params.flag("recursive"):
            raise V2Error(E_DIR_NOT_EMPTY, path, below.header.revision)
        prefix = self._dir_prefix(path)
        created = min(kv.create_revision for kv in below.kvs)
        resp = await self._kv.DeleteRange(pb.DeleteRangeRequest(key=prefix,
                                                                range_end=_prefix_end(prefix)),
                                          timeout=REQUEST_TIMEOUT_S)
        body = {"action": "delete",
                "node": {"key": path, "dir": True, "modifiedIndex": resp.header.revision,
                         "createdIndex": created},
                "prevNode": {"key": path, "dir": True, "modifiedIndex": created,
                             "createdIndex": created}}
        return self._ok(200, body, resp.header)


def _expiry(ttl: int) -> dict[str, Any]:
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=ttl)
    return {"expiration": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "ttl": ttl}


def _compare_cause(params: Params, prev_index: int, kv: kv_pb2.KeyValue) -> str:
    parts = []
    if params.has("prevValue") and params.get("prevValue").encode() != kv.value:
        parts.append(f"{params.get('prevValue')} != {kv.value.decode()}")
    if prev_index and prev_index != kv.mod_revision:
        parts.append(f"{prev_index} != {kv.mod_revision}")
    return "[" + "] [".join(parts) + "]" if parts else "[]"

"""etcd's v2 discovery protocol (`--discovery <url>`): find the other members of a new cluster
through a registry served by etcd's v2 keys HTTP API.

The discovery URL's path is the cluster's registry directory (and, whole, the cluster token the
member IDs are hashed with). Each member creates `<dir>/<member-id-hex>` = its
`name=peer-url,...` if absent, then waits until `<dir>/_config/size` members have registered;
the first `size` registrations by createdIndex are the cluster. The registry can be any etcd
with the v2 API, Debian's etcd-discovery (the public discovery.etcd.io's code) in front of one,
or an etcdpy member with `--enable-v2`.

Failures are etcd's (`discovery: cluster is full`, `discovery: size key is bad`, the v2 server's
own error for a missing size key, ...) wrapped as `failed to join discovery cluster (...)`.
A registry that cannot be reached is retried with etcd's backoff (2^n seconds, at most 256),
but, unlike etcd, only until a total of `retry_timeout_s` (default `DEFAULT_RETRY_TIMEOUT_S`,
overridden by the environment variable `ETCDPY_DISCOVERY_TIMEOUT`, in seconds) has passed:
then it fails with `discovery: too many retries` rather than hanging a start-up forever.
Waiting for the other members to register is not bounded in time (they may be started much
later, as with etcd); each long poll is re-issued after `POLL_TIMEOUT_S`.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from etcdpy import logutil
from etcdpy.cluster.membership import format_id, parse_initial_cluster

log = logutil.get("discovery")

DEFAULT_RETRY_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 5.0  # etcd's client.DefaultRequestTimeout for the non-waiting requests
POLL_TIMEOUT_S = 60.0  # a long poll for more members is re-issued after this long
MAX_BACKOFF_EXPONENT = 8  # etcd: 2^8 s is the longest pause between retries
MAX_WATCH_POLLS = 100_000  # bounds the waiting loop (~70 days of idle polls)

# etcd's v2discovery error texts.
ERR_INVALID_URL = "discovery: invalid URL"
ERR_BAD_SIZE_KEY = "discovery: size key is bad"
ERR_SIZE_NOT_FOUND = "discovery: size key not found"
ERR_DUPLICATE_ID = "discovery: found duplicate id"
ERR_DUPLICATE_NAME = "discovery: found duplicate name"
ERR_FULL_CLUSTER = "discovery: cluster is full"
ERR_TOO_MANY_RETRIES = "discovery: too many retries"
ERR_BAD_ENDPOINT = "discovery: bad discovery endpoint"

# v2 keys error codes that discovery reacts to.
V2_KEY_NOT_FOUND = 100
V2_NODE_EXIST = 105


class DiscoveryError(Exception):
    """Discovery failed; `cause` is etcd's inner error text, `op` what was being done."""

    def __init__(self, cause: str, op: str = "join") -> None:
        super().__init__(f"failed to {op} discovery cluster ({cause})")
        self.cause = cause
        self.op = op


class _Failure(Exception):
    """An inner discovery error (one of the ERR_* texts, or the registry's own error)."""


class _Unreachable(Exception):
    """The registry could not be asked (etcd's client.ClusterError): worth a retry."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"client: etcd cluster is unavailable or misconfigured; {detail}")
        self.detail = detail


@dataclass(frozen=True, slots=True)
class V2Error:
    """The JSON error body of etcd's v2 keys API."""

    code: int
    message: str
    cause: str
    index: int

    def __str__(self) -> str:
        return f"{self.code}: {self.message} ({self.cause}) [{self.index}]"


class _V2Failure(_Failure):
    def __init__(self, error: V2Error) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class Node:
    """One registration (or the size key) as the v2 API reports it."""

    key: str
    value: str
    created_index: int
    modified_index: int

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Node:
        return Node(str(obj.get("key", "")), str(obj.get("value", "")),
                    int(obj.get("createdIndex", 0)), int(obj.get("modifiedIndex", 0)))


def proxy_url(proxy: str) -> str:
    """etcd's sanitising of --discovery-proxy: a value without an http(s) scheme gets one."""
    parsed = urllib.parse.urlsplit(proxy)
    if not parsed.scheme.startswith("http"):
        return "http://" + proxy
    return proxy


def retry_timeout_from_env() -> float:
    text = os.environ.get("ETCDPY_DISCOVERY_TIMEOUT", "")
    try:
        return float(text) if text else DEFAULT_RETRY_TIMEOUT_S
    except ValueError:
        return DEFAULT_RETRY_TIMEOUT_S


class V2KeysClient:
    """The few v2 keys requests discovery makes, over urllib, through an optional proxy."""

    def __init__(self, base_url: str, proxy: str = "") -> None:
        self.base_url = base_url
        # Like etcd, only --discovery-proxy is used: HTTP(S)_PROXY in the environment is not.
        handlers: dict[str, str] = {}
        if proxy:
            url = proxy_url(proxy)
            handlers = {"http": url, "https": url}
            log.info("running proxy with discovery", **{"proxy-url": url})
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(handlers))

    def _url(self, key: str, query: dict[str, str]) -> str:
        return self.base_url + urllib.parse.quote(key) + "?" + urllib.parse.urlencode(query)

    def _do(self, request: urllib.request.Request, timeout: float) -> tuple[dict[str, Any], int]:
        try:
            with self._opener.open(request, timeout=timeout) as resp:
                status, body = resp.status, resp.read()
                index = resp.headers.get("X-Etcd-Index", "0")
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
            index = err.headers.get("X-Etcd-Index", "0") if err.headers else "0"
            if 500 <= status <= 503:
                raise _Unreachable(f"error #0: server error {status}") from err
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise _Unreachable(f"error #0: {reason}") from err
        try:
            obj = json.loads(body)
            assert isinstance(obj, dict)
        except (ValueError, AssertionError):
            raise _Failure(ERR_BAD_ENDPOINT) from None
        if "errorCode" in obj:
            raise _V2Failure(V2Error(int(obj["errorCode"]), str(obj.get("message", "")),
                                     str(obj.get("cause", "")), int(obj.get("index", 0))))
        if status >= 300:
            raise _Failure(ERR_BAD_ENDPOINT)
        try:
            return obj, int(index)
        except ValueError:
            return obj, 0

    def get(self, key: str) -> tuple[dict[str, Any], int]:
        query = {"quorum": "false", "recursive": "false", "sorted": "false"}
        return self._do(urllib.request.Request(self._url(key, query)), REQUEST_TIMEOUT_S)

    def create(self, key: str, value: str) -> Node:
        data = urllib.parse.urlencode({"value": value}).encode()
        request = urllib.request.Request(
            self._url(key, {"prevExist": "false"}), data=data, method="PUT",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        obj, _ = self._do(request, REQUEST_TIMEOUT_S)
        return Node.from_json(obj.get("node") or {})

    def wait(self, key: str, wait_index: int, recursive: bool) -> Node | None:
        """The first change at or after `wait_index`, None when the poll timed out."""
        query = {"wait": "true", "waitIndex": str(wait_index)}
        if recursive:
            query["recursive"] = "true"
        try:
            obj, _ = self._do(urllib.request.Request(self._url(key, query)), POLL_TIMEOUT_S)
        except _Unreachable as err:
            if "timed out" in err.detail:
                return None
            raise
        if obj.get("action") in ("delete", "expire", "compareAndDelete"):
            return Node(str((obj.get("node") or {}).get("key", "")), "", 0, 0)
        return Node.from_json(obj.get("node") or {})


class V2Discovery:
    """One member's run of the protocol (etcd's v2discovery.discovery)."""

    def __init__(self, durl: str, proxy: str, member_id: int,
                 retry_timeout_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        parsed = urllib.parse.urlsplit(durl)  # raises ValueError for e.g. an unclosed "["
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise DiscoveryError(f'unsupported protocol scheme "{parsed.scheme}"'
                                 if parsed.scheme not in ("http", "https")
                                 else f'no Host in request URL "{durl}"')
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        self.cluster = parsed.path
        self.member_id = member_id
        self.client = V2KeysClient(self.url, proxy)
        self.retries = 0
        timeout = retry_timeout_from_env() if retry_timeout_s is None else retry_timeout_s
        self._deadline = time.monotonic() + timeout
        self._sleep = sleep

    @property
    def self_key(self) -> str:
        return posixpath.join("/", self.cluster, format_id(self.member_id))

    @property
    def _config_key(self) -> str:
        return posixpath.join("/", self.cluster, "_config")

    def join_cluster(self, config: str) -> str:
        """Register `config` (this member's `name=url,...`) and return the initial cluster."""
        self.check_cluster()  # fast path: a full cluster is refused before registering
        self.create_self(config)
        nodes, size, index = self.check_cluster()
        nodes = self.wait_nodes(nodes, size, index)
        return nodes_to_cluster(nodes, size)

    def create_self(self, config: str) -> None:
        try:
            node = self.client.create(self.self_key, config)
        except _V2Failure as err:
            if err.error.code == V2_NODE_EXIST:
                raise _Failure(ERR_DUPLICATE_ID) from None
            raise
        except _Unreachable as err:
            # etcd fails at once here too (a retried create would find itself a duplicate).
            raise _Failure(str(err)) from None
        # Ensure the registration is visible on the server we talk to.
        for _ in range(MAX_WATCH_POLLS):
            if self.client.wait(self.self_key, node.created_index, recursive=False) is not None:
                return
        raise _Failure(ERR_TOO_MANY_RETRIES)

    def check_cluster(self) -> tuple[list[Node], int, int]:
        """(registrations by createdIndex, size, X-Etcd-Index); raises when full."""
        while True:
            size_key = posixpath.join(self._config_key, "size")
            try:
                obj, _ = self.client.get(size_key)
                size_text = str((obj.get("node") or {}).get("value", ""))
                try:
                    size = int(size_text)
                    assert size >= 0 and size_text.isdigit()
                except (ValueError, AssertionError):
                    raise _Failure(ERR_BAD_SIZE_KEY) from None
                obj, index = self.client.get(self.cluster)
                break
            except _Unreachable as err:
                log.warning("failed to get from discovery server",
                            **{"discovery-url": self.url, "path": size_key,
                               "error": str(err) + "\n", "err-detail": err.detail + "\n"})
                self._backoff("cluster status check")
        children = (obj.get("node") or {}).get("nodes") or []
        nodes = sorted(
            (Node.from_json(n) for n in children
             if posixpath.basename(str(n.get("key", ""))) != "_config"),
            key=lambda n: n.created_index,
        )
        mine = posixpath.basename(self.self_key)
        for i, node in enumerate(nodes):
            if posixpath.basename(node.key) == mine:
                break
            if i >= size - 1:
                raise _Failure(ERR_FULL_CLUSTER)
        return nodes, size, index

    def wait_nodes(self, nodes: list[Node], size: int, index: int) -> list[Node]:
        found = list(nodes[:size])
        mine = posixpath.basename(self.self_key)
        for node in found:
            what = "self" if posixpath.basename(node.key) == mine else "peer"
            # etcd's field is named "self", which StructLogger.info's own parameter shadows.
            log._log(logging.INFO, f"found {what} from discovery server",
                     {"discovery-url": self.url, what: posixpath.basename(node.key)})
        next_index = index + 1
        polls = 0
        while len(found) < size:
            log.info("found peers from discovery server; waiting for more",
                     **{"discovery-url": self.url, "found-peers": len(found),
                        "needed-peers": size - len(found)})
            while True:
                polls += 1
                assert polls <= MAX_WATCH_POLLS, "discovery waited too long"
                try:
                    node = self.client.wait(self.cluster, next_index, recursive=True)
                except _Unreachable as err:
                    log.warning("error while waiting for peers",
                                **{"discovery-url": self.url, "error": str(err),
                                   "err-detail": err.detail})
                    self._backoff("waiting for other nodes")
                    nodes, size, index = self.check_cluster()
                    return self.wait_nodes(nodes, size, index)
                if node is not None:
                    break
            next_index = max(next_index, node.modified_index + 1)
            base = posixpath.basename(node.key)
            known = {posixpath.basename(n.key) for n in found}
            # A deletion, a change of _config or a re-write of a known key adds no member.
            if not node.value or base == "_config" or "/_config/" in node.key or base in known:
                continue
            log.info("found peer from discovery server",
                     **{"discovery-url": self.url, "peer": base})
            found.append(node)
        log.info("found all needed peers from discovery server",
                 **{"discovery-url": self.url, "found-peers": len(found)})
        return found

    def _backoff(self, step: str) -> None:
        self.retries += 1
        pause = float(1 << min(self.retries, MAX_BACKOFF_EXPONENT))
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _Failure(ERR_TOO_MANY_RETRIES)
        pause = min(pause, left)
        log.info("retry connecting to discovery service",
                 **{"url": self.url, "reason": step, "backoff": f"{pause:g}s"})
        self._sleep(pause)


def nodes_to_cluster(nodes: list[Node], size: int) -> str:
    """The registrations joined into an initial-cluster string, checked as etcd checks it."""
    text = ",".join(n.value for n in nodes)
    try:
        members = parse_initial_cluster(text)
        for urls in members.values():
            for url in urls:
                parts = urllib.parse.urlsplit(url)
                assert parts.scheme in ("http", "https") and parts.netloc
    except (ValueError, AssertionError):
        raise _Failure(ERR_INVALID_URL) from None
    if len(members) != size:
        raise _Failure(ERR_DUPLICATE_NAME)
    return text


def join_cluster(durl: str, proxy: str, member_id: int, config: str,
                 retry_timeout_s: float | None = None) -> str:
    """etcd's v2discovery.JoinCluster: the initial cluster, or DiscoveryError."""
    try:
        return V2Discovery(durl, proxy, member_id, retry_timeout_s).join_cluster(config)
    except ValueError as err:
        # Go's url.Parse words the one malformation urlsplit refuses differently.
        text = "missing ']' in host" if "IPv6" in str(err) else str(err)
        raise DiscoveryError(f'parse "{durl}": {text}') from None
    except _Failure as err:
        raise DiscoveryError(str(err)) from None

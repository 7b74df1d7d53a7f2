"""The client port's HTTP/1.1 side: `/health`, `/livez`, `/readyz`, `/version`, `/metrics`
and the JSON gateway under `/v3/` (an `etcdpy.netshare.HttpHandler`).

`/health` checks what etcd 3.5's does, in its order: an active alarm (unless listed in
`?exclude=`), a leader (unless `?serializable=true`), then a read of the key "health"
(linearizable unless serializable). Its answer is `{"health":"true","reason":""}`, or 503 with
etcd's reason (`ALARM NOSPACE`, `RAFT NO LEADER`, `RANGE ERROR:...`).

`/livez` and `/readyz` are etcd 3.5.11+'s probes (3.5.1 answers 404 for them; we report a
later 3.5 and kubelet uses them): named checks run in order, each also served alone under
`/livez/<name>`, `/readyz/<name>`; `?exclude=<name>` skips one (unknown names are ignored),
`?verbose` lists the results before the final `ok`. A failure answers 503 with the list.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from enum import IntEnum
from urllib.parse import parse_qs, urlsplit

import grpc

from etcdpy import ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION, logutil
from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.netshare import HttpRequest, HttpResponse
from etcdpy.server import errors
from etcdpy.server.api.gateway import CORS_HEADERS, Gateway
from etcdpy.server.api.metrics import CONTENT_TYPE, ServerMetrics
from etcdpy.server.api.v2keys import V2Keys
from etcdpy.server.etcdserver import EtcdServer

log = logutil.get("http")

_JSON = ("Content-Type", "application/json")
# etcd writes /health's JSON without a content type, so Go labels it plain text.
_TEXT = ("Content-Type", "text/plain; charset=utf-8")
_ALARM_NAMES: dict[int, str] = {pb.AlarmType.NOSPACE: "NOSPACE", pb.AlarmType.CORRUPT: "CORRUPT"}


class Endpoints(IntEnum):
    """Which routes a listener serves."""

    CLIENT = 0  # everything: health, version, metrics, the gateway
    METRICS = 1  # --listen-metrics-urls: /metrics and the health checks only


class ClientHttpHandler:
    def __init__(self, server: EtcdServer, gateway: Gateway, metrics: ServerMetrics,
                 endpoints: Endpoints = Endpoints.CLIENT, v2keys: V2Keys | None = None) -> None:
        self._server = server
        self._gateway = gateway
        self._metrics = metrics
        self._endpoints = endpoints
        self._v2keys = v2keys  # --enable-v2: the v2 keys API subset discovery uses

    def for_endpoints(self, endpoints: Endpoints) -> ClientHttpHandler:
        return ClientHttpHandler(self._server, self._gateway, self._metrics, endpoints,
                                 self._v2keys)

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        if self._endpoints is Endpoints.METRICS:
            return await self._route(req)
        # etcd wraps its whole client HTTP mux in a permissive CORS handler (an OPTIONS
        # preflight answers 200 at once); its metrics listeners are not wrapped.
        if req.method == "OPTIONS":
            return HttpResponse(200, CORS_HEADERS)
        resp = await self._route(req)
        if any(name == "Access-Control-Allow-Origin" for name, _ in resp.headers):
            return resp
        return HttpResponse(resp.status, (*CORS_HEADERS, *resp.headers), resp.body)

    async def _route(self, req: HttpRequest) -> HttpResponse:
        path = req.path
        if path == "/health":
            return await self._health(req)
        probe, sub, check = path[1:].partition("/")
        if probe in ("livez", "readyz"):
            checks = self._probe_checks(probe)
            if not sub:
                return await self._probe(req, checks)
            if check in checks:
                return await self._probe(req, {check: checks[check]})
        if path == "/metrics":
            if req.method != "GET":
                return _not_allowed()
            body = await self._metrics.render()
            return HttpResponse(200, (("Content-Type", CONTENT_TYPE),), body)
        if self._endpoints is Endpoints.CLIENT:
            if path == "/version":
                if req.method != "GET":
                    return _not_allowed()
                return _json(200, {"etcdserver": ETCD_SERVER_VERSION,
                                   "etcdcluster": ETCD_CLUSTER_VERSION})
            if Gateway.handles(path):
                return await self._gateway(req)
            if self._v2keys is not None and V2Keys.handles(path):
                return await self._v2keys(req)
        return HttpResponse.text(404, "404 page not found\n")

    async def _health(self, req: HttpRequest) -> HttpResponse:
        if req.method != "GET":
            return _not_allowed()
        query = req.query
        serializable = query.get("serializable", [""])[-1] == "true"
        excluded = {name for value in query.get("exclude", []) for name in value.split(",")}
        reason = await self.check(serializable, excluded)
        if reason:
            self._metrics.health_failures.inc()
            log.warning("serving /health false", reason=reason)
            return _json(503, {"health": "false", "reason": reason}, _TEXT)
        self._metrics.health_success.inc()
        return _json(200, {"health": "true", "reason": ""}, _TEXT)

    def _probe_checks(self, probe: str) -> dict[str, Callable[[], Awaitable[str]]]:
        """The named checks of /livez or /readyz, in etcd's order; each answers its error
        ("" when it passes)."""
        if probe == "livez":
            return {"serializable_read": lambda: self._read_error(serializable=True)}
        return {
            "data_corruption": self._corruption_error,
            # Both reads: which of the two fails tells a local problem from a lost quorum.
            "serializable_read": lambda: self._read_error(serializable=True),
            "linearizable_read": lambda: self._read_error(serializable=False),
            "non_learner": self._learner_error,
        }

    async def _probe(self, req: HttpRequest,
                     checks: dict[str, Callable[[], Awaitable[str]]]) -> HttpResponse:
        if req.method != "GET":
            return _not_allowed()
        query = parse_qs(urlsplit(req.target).query, keep_blank_values=True)
        excluded = {name for name in query.get("exclude", []) if name}
        lines = []
        failed = False
        for name, check in checks.items():
            if name in excluded:
                continue
            error = await check()
            self._metrics.health_checks.record(req.path[1:].partition("/")[0], name, not error)
            failed = failed or bool(error)
            lines.append(f"[-]{name} failed: {error}\n" if error else f"[+]{name} ok\n")
        report = "".join(lines)
        if failed:  # the report is always given on failure (Go's http.Error adds a newline)
            log.warning("health check failed", path=req.path, reason=report)
            return HttpResponse.text(503, report + "\n")
        return HttpResponse.text(200, (report if "verbose" in query else "") + "ok\n")

    async def _corruption_error(self) -> str:
        alarms = await self._active_alarms()
        return "alarm activated: CORRUPT" if pb.AlarmType.CORRUPT in alarms else ""

    async def _learner_error(self) -> str:
        return "not supported for learner" if self._server.is_learner else ""

    async def _read_error(self, serializable: bool) -> str:
        timeout = self._server.settings.request_timeout_s
        try:
            await asyncio.wait_for(
                self._gateway.call("/etcdserverpb.KV/Range",
                                   pb.RangeRequest(key=b"health", serializable=serializable),
                                   pb.RangeResponse, timeout),
                timeout)
        except grpc.aio.AioRpcError as err:
            # etcd reads as root here: a read refused for want of a user or permission (auth
            # enabled) does not make the member unhealthy.
            if err.code() is not grpc.StatusCode.PERMISSION_DENIED and \
                    err.details() != errors.UserEmpty.message:
                return err.details() or err.code().name
        except TimeoutError:
            return "context deadline exceeded"
        return ""

    async def check(self, serializable: bool, excluded: set[str]) -> str:
        """The first failing health check's reason, "" when healthy."""
        alarms = await self._active_alarms()
        for alarm in alarms:
            name = _ALARM_NAMES.get(alarm, "UNKNOWN")
            if name not in excluded:
                return f"ALARM {name}"
        if not serializable and self._server.leader_id == 0:
            return "RAFT NO LEADER"
        error = await self._read_error(serializable)
        return f"RANGE ERROR:{error}" if error else ""

    async def _active_alarms(self) -> list[int]:
        try:
            resp = await self._gateway.call(
                "/etcdserverpb.Maintenance/Alarm",
                pb.AlarmRequest(action=pb.AlarmRequest.GET), pb.AlarmResponse,
                self._server.settings.request_timeout_s)
        except grpc.aio.AioRpcError:
            return []
        return [a.alarm for a in resp.alarms]


def _json(status: int, obj: object, content_type: tuple[str, str] = _JSON) -> HttpResponse:
    return HttpResponse(status, (content_type,), json.dumps(obj, separators=(",", ":")).encode())


def _not_allowed() -> HttpResponse:
    return HttpResponse.text(405, "Method Not Allowed\n", (("Allow", "GET"),))

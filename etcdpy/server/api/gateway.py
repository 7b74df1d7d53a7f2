"""etcd's grpc-gateway: the JSON API under `/v3/` on the client port.

Like etcd's gateway (which dials its own gRPC server over loopback), every request is sent
through a gRPC channel to this member's own client gRPC server, on its private Unix socket.
That way the gateway runs exactly the servicers, interceptors and error mapping that gRPC
clients get, and nothing here re-implements a request.

Encoding is grpc-gateway v1's as etcd 3.5 configures it: protojson with the proto field names,
64-bit integers as strings, bytes as base64, fields at their default omitted. Errors are
`{"error":msg,"code":grpc_code,"message":msg}` with the HTTP status grpc-gateway maps the gRPC
code to. Streaming RPCs (watch, lease keep-alive) read every JSON object of the request body as
one stream message and answer `{"result":{...}}` objects, one per response, as a chunked body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message

from etcdpy import _pb, logutil
from etcdpy._pb.gateway_routes import ROUTES
from etcdpy.netshare import HttpRequest, HttpResponse

log = logutil.get("gateway")

# etcd 3.5 still answers /v3beta/ by rewriting it to /v3/ (/v3alpha/ is gone: 404).
DEPRECATED_PREFIXES = ("/v3beta/",)
# A stream body holds at most this many request objects (the HTTP layer bounds its size too).
MAX_STREAM_REQUESTS = 10_000
# Responses a slow HTTP reader may fall behind a stream by, before gRPC is paused (bounded).
STREAM_BUFFER = 64

# etcd wraps its gateway in a permissive CORS handler: every /v3 answer carries these.
CORS_HEADERS = (
    ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
    ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
    ("Access-Control-Allow-Origin", "*"),
)
_JSON = ("Content-Type", "application/json")
# grpc-gateway forwards the gRPC response's header metadata as Grpc-Metadata-* on success.
_OK_HEADERS = (*CORS_HEADERS, _JSON, ("Grpc-Metadata-Content-Type", "application/grpc"))
_TEXT = (("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff"))
# Streams that stay open after the body's last request, as etcd's do: a watch keeps sending
# events until the HTTP client goes away (a keep-alive stream ends with its requests).
KEEP_OPEN = frozenset({"/etcdserverpb.Watch/Watch"})

# grpc-gateway v1's HTTPStatusFromCode, which etcd 3.5's gateway uses.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 408,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class GatewayError(Exception):
    """A request the gateway refuses, with the gRPC code it reports."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # gRPC method path, e.g. "/etcdserverpb.KV/Range"
    request_type: type[Message]
    response_type: type[Message]
    client_streaming: bool
    server_streaming: bool


# Routes etcd 3.5.1's gateway does not register (HashKV has no HTTP binding there: 404).
NOT_ROUTED = frozenset({"/v3/maintenance/hashkv"})


def _routes() -> dict[str, Route]:
    out: dict[str, Route] = {}
    for path, method in ROUTES.items():
        if path in NOT_ROUTED:
            continue
        service, name = method.strip("/").split("/")
        try:
            desc = _pb.POOL.FindServiceByName(service).FindMethodByName(name)
        except KeyError:
            continue  # a service whose generated module is not loaded
        out[path] = Route(
            method,
            message_factory.GetMessageClass(desc.input_type),
            message_factory.GetMessageClass(desc.output_type),
            desc.client_streaming,
            desc.server_streaming,
        )
    return out


def _load_services() -> None:
    # Importing the generated modules registers their services in POOL.
    from etcdpy._pb.etcdserverpb import rpc_pb2  # noqa: F401
    from etcdpy._pb.v3electionpb import v3election_pb2  # noqa: F401
    from etcdpy._pb.v3lockpb import v3lock_pb2  # noqa: F401


def to_json(msg: Message) -> dict[str, Any]:
    """protojson as etcd's gateway writes it (field names, int64 strings, defaults omitted)."""
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, descriptor_pool=_pb.POOL
    )


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def error_body(code: grpc.StatusCode, message: str) -> bytes:
    return _dumps({"error": message, "code": code.value[0], "message": message})


def error_response(code: grpc.StatusCode, message: str) -> HttpResponse:
    return HttpResponse(_HTTP_STATUS.get(code, 500), (*CORS_HEADERS, _JSON), error_body(code, message))


def _parse_objects(body: bytes) -> list[Any]:
    """Every JSON value in `body`, one after another (a stream's requests)."""
    text = body.decode("utf-8")
    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos = 0
    while len(out) < MAX_STREAM_REQUESTS:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        value, pos = decoder.raw_decode(text, pos)
        out.append(value)
    return out


def _parse(route: Route, obj: Any) -> Message:
    msg = route.request_type()
    json_format.ParseDict(obj, msg, descriptor_pool=_pb.POOL)
    return msg


class Gateway:
    """Serves `/v3/...` JSON requests through a gRPC channel to `grpc_target`."""

    def __init__(self, grpc_target: str, on_deprecated: Callable[[str], None] | None = None
                 ) -> None:
        _load_services()
        self._target = grpc_target
        self._routes = _routes()
        self._channel: grpc.aio.Channel | None = None
        self._on_deprecated = on_deprecated

    @staticmethod
    def handles(path: str) -> bool:
        return path.startswith("/v3/") or path.startswith(DEPRECATED_PREFIXES)

    def _chan(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self._target,
                options=[("grpc.max_receive_message_length", 2**31 - 1),
                         ("grpc.max_send_message_length", 2**31 - 1)],
            )
        return self._channel

    async def call(self, method: str, request: Message, response_type: type[Message],
                   timeout: float) -> Any:
        """One unary RPC on this member's own gRPC server (raises grpc.aio.AioRpcError)."""
        rpc = self._chan().unary_unary(
            method, request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return await rpc(request, timeout=timeout)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        path = req.path
        for prefix in DEPRECATED_PREFIXES:
            if path.startswith(prefix):
                if self._on_deprecated is not None:
                    self._on_deprecated(path)
                path = "/v3/" + path[len(prefix):]
        if req.method == "OPTIONS":
            return HttpResponse(200, CORS_HEADERS)  # a CORS preflight
        route = self._routes.get(path)
        if route is None:
            return HttpResponse(404, (*CORS_HEADERS, *_TEXT), b"Not Found\n")
        if req.method != "POST":
            return HttpResponse(405, (*CORS_HEADERS, *_TEXT), b"Method Not Allowed\n")
        metadata = _metadata(req)
        try:
            objects = _parse_objects(req.body) if req.body.strip() else [{}]
            requests = [_parse(route, o) for o in objects]
        except (ValueError, json_format.ParseError, UnicodeDecodeError) as exc:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not route.client_streaming and len(requests) != 1:
            requests = requests[:1]
        if route.server_streaming:
            return HttpResponse(200, _OK_HEADERS, self._stream(route, requests, metadata))
        call = self._chan().unary_unary(
            route.method,
            request_serializer=route.request_type.SerializeToString,
            response_deserializer=route.response_type.FromString,
        )
        try:
            resp = await call(requests[0], metadata=metadata)
        except grpc.aio.AioRpcError as err:
            return error_response(err.code(), err.details() or "")
        return HttpResponse(200, _OK_HEADERS, _dumps(to_json(resp)))

    async def _stream(self, route: Route, requests: list[Message],
                      metadata: tuple[tuple[str, str], ...]) -> AsyncIterator[bytes]:
        chan = self._chan()
        if route.client_streaming:
            call: Any = chan.stream_stream(
                route.method,
                request_serializer=route.request_type.SerializeToString,
                response_deserializer=route.response_type.FromString,
            )(metadata=metadata)
            half_close = route.method not in KEEP_OPEN
            writer = asyncio.ensure_future(_write_all(call, requests, half_close))
        else:
            call = chan.unary_stream(
                route.method,
                request_serializer=route.request_type.SerializeToString,
                response_deserializer=route.response_type.FromString,
            )(requests[0], metadata=metadata)
            writer = None
        try:
            async for resp in call:
                yield _dumps({"result": to_json(resp)}) + b"\n"
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code is not grpc.StatusCode.CANCELLED:
                message = err.details() or ""
                yield _dumps({"error": {
                    "grpc_code": code.value[0], "http_code": _HTTP_STATUS.get(code, 500),
                    "message": message, "http_status": _status_text(code)}}) + b"\n"
        finally:
            # The HTTP client went away (or the stream ended): end the gRPC call too.
            call.cancel()
            if writer is not None:
                writer.cancel()


async def _write_all(call: Any, requests: list[Message], half_close: bool) -> None:
    for request in requests:
        await call.write(request)
    if half_close:
        await call.done_writing()


def _metadata(req: HttpRequest) -> tuple[tuple[str, str], ...]:
    # grpc-gateway passes the auth token through as gRPC metadata.
    token = req.header("authorization")
    return (("token", token),) if token else ()


def _status_text(code: grpc.StatusCode) -> str:
    from http import HTTPStatus

    return HTTPStatus(_HTTP_STATUS.get(code, 500)).phrase

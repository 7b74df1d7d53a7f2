"""The gateway's JSON encoding and error mapping, in-process (no server needed)."""

from __future__ import annotations

import json

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.api import gateway


def test_protojson_uses_field_names_int64_strings_and_omits_defaults() -> None:
    resp = pb.RangeResponse(count=3, more=False)
    resp.header.revision = 2**40
    resp.kvs.add(key=b"k", value=b"", create_revision=5)
    assert gateway.to_json(resp) == {
        "header": {"revision": str(2**40)},
        "kvs": [{"key": "aw==", "create_revision": "5"}],
        "count": "3",
    }


def test_a_stream_body_is_every_json_object_in_it() -> None:
    body = b' {"ID":"1"}\n{"ID":"2"}{"ID":3} '
    assert gateway._parse_objects(body) == [{"ID": "1"}, {"ID": "2"}, {"ID": 3}]
    with pytest.raises(ValueError):
        gateway._parse_objects(b'{"ID":')


@pytest.mark.parametrize(("code", "status"), [
    (grpc.StatusCode.INVALID_ARGUMENT, 400),
    (grpc.StatusCode.NOT_FOUND, 404),
    (grpc.StatusCode.OUT_OF_RANGE, 400),
    (grpc.StatusCode.FAILED_PRECONDITION, 400),
    (grpc.StatusCode.UNAVAILABLE, 503),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (grpc.StatusCode.UNIMPLEMENTED, 501),
    (grpc.StatusCode.PERMISSION_DENIED, 403),
])
def test_errors_carry_grpc_code_and_grpc_gateway_status(code: grpc.StatusCode,
                                                        status: int) -> None:
    resp = gateway.error_response(code, "etcdserver: x")
    assert resp.status == status
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body) == {"error": "etcdserver: x", "code": code.value[0],
                                     "message": "etcdserver: x"}


def test_routes_cover_kv_lease_watch_cluster_and_maintenance_but_not_hashkv() -> None:
    routes = gateway._routes()
    assert routes["/v3/kv/range"].request_type is pb.RangeRequest
    assert routes["/v3/watch"].client_streaming and routes["/v3/watch"].server_streaming
    assert routes["/v3/lease/keepalive"].server_streaming
    assert "/v3/cluster/member/list" in routes and "/v3/maintenance/status" in routes
    assert "/v3/maintenance/hashkv" not in routes

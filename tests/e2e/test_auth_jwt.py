"""`--auth-token jwt,...` on etcdpy and on real etcd 3.5.1: the same etcdctl answers, tokens with
the same claims, an old token refused the same way, and the same refusal of bad options."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.e2e.grpc_pair import answer
from tests.e2e.harness import single_member, start_all
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e

ROOT = ("--user", "root:rootpw")


def rsa_keys(tmp_path: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(65537, 2048)
    priv, pub = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


@pytest.fixture
def jwt_pair(tmp_path: Path) -> Iterator[tuple[Pair, Path]]:
    priv, pub = rsa_keys(tmp_path)
    flag = ["--auth-token", f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=10m"]
    members = [single_member("etcd", tmp_path, extra_args=flag),
               single_member("etcdpy", tmp_path, extra_args=flag)]
    try:
        start_all(members)
        yield Pair(members[0], members[1]), pub
    finally:
        for m in members:
            m.stop()


def test_jwt_tokens_behave_like_etcds(jwt_pair: tuple[Pair, Path]) -> None:
    pair, pub = jwt_pair
    for step in (("user", "add", "root:rootpw"), ("auth", "enable"),
                 (*ROOT, "user", "add", "alice:apw"), (*ROOT, "role", "add", "r1"),
                 (*ROOT, "role", "grant-permission", "r1", "readwrite", "/a", "--prefix"),
                 (*ROOT, "user", "grant-role", "alice", "r1"),
                 ("--user", "alice:apw", "put", "/a1", "v"),
                 ("--user", "alice:apw", "put", "/b1", "v"),
                 ("--user", "alice:apw", "get", "/a1"),
                 ("--user", "alice:bad", "get", "/a1"),
                 (*ROOT, "auth", "status")):
        pair.same(*step)
    answers = []
    for m in pair.members:
        channel = grpc.insecure_channel(m.endpoint)
        try:
            token = pb_grpc.AuthStub(channel).Authenticate(
                pb.AuthenticateRequest(name="alice", password="apw"), timeout=10).token
            claims = jwt.decode(token, pub.read_bytes(), algorithms=["RS256"])
            kv = pb_grpc.KVStub(channel)
            md = (("token", token),)
            fresh = answer(lambda kv=kv, md=md: kv.Range(pb.RangeRequest(key=b"/a1"),
                                                         metadata=md, timeout=10))
            # Any auth change makes the token's revision old.
            pb_grpc.AuthStub(channel).RoleAdd(pb.AuthRoleAddRequest(name="r2"), timeout=10,
                                              metadata=(("token", root_token(channel)),))
            stale = answer(lambda kv=kv, md=md: kv.Range(pb.RangeRequest(key=b"/a1"),
                                                         metadata=md, timeout=10))
            stale_put = answer(lambda kv=kv, md=md: kv.Put(
                pb.PutRequest(key=b"/a1", value=b"w"), metadata=md, timeout=10))
            answers.append((sorted(claims), claims["username"], claims["revision"], fresh,
                            stale, stale_put))
        finally:
            channel.close()
    want, got = answers
    assert got == want
    assert want[4] == (grpc.StatusCode.UNKNOWN, "auth: revision in header is old")


def root_token(channel: grpc.Channel) -> str:
    return str(pb_grpc.AuthStub(channel).Authenticate(
        pb.AuthenticateRequest(name="root", password="rootpw"), timeout=10).token)


@pytest.mark.parametrize("spec", ["foo", "jwt", "jwt,sign-method=RS256"])
def test_bad_auth_token_options_stop_startup_like_etcd(tmp_path: Path, spec: str) -> None:
    outcomes = []
    for kind in ("etcd", "etcdpy"):
        m = single_member(kind, tmp_path / spec.replace(",", "_"), extra_args=[
            "--auth-token", spec])
        m.data_dir.parent.mkdir(parents=True, exist_ok=True)
        m.start()
        assert m.proc is not None
        try:
            code = m.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            m.stop()
            raise
        text = m.log_path.read_text() if m.log_path else ""
        outcomes.append((code, [line for line in ("auth: invalid auth options",
                                                  "auth: missing key data") if line in text]))
    want, got = outcomes
    assert got == want
    assert want[0] == 1 and len(want[1]) == 1

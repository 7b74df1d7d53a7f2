"""Every relay mode of the shared client port serves etcdctl (gRPC) and curl (HTTP) alike
(ASYNCIO, the default, is what every other e2e test runs on)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.e2e.gateway_client import curl
from tests.e2e.harness import etcdctl, single_member

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("mode", ["SPLICE", "PROCESS"])
def test_relay_mode_serves_grpc_and_http_on_one_port(tmp_path: Path, mode: str) -> None:
    member = single_member("etcdpy", tmp_path)
    member.env["ETCDPY_CLIENT_RELAY"] = mode
    member.start()
    try:
        member.wait_serving()
        etcdctl([member.endpoint], "put", "relay", mode)
        reply = curl(f"{member.client_url}/v3/kv/range",
                     f'{{"key":"{base64.b64encode(b"relay").decode()}"}}')
        assert base64.b64decode(reply.json()["kvs"][0]["value"]).decode() == mode
        curl(f"{member.client_url}/v3/kv/put",
             f'{{"key":"{base64.b64encode(b"back").decode()}","value":"aGk="}}')
        got = etcdctl([member.endpoint], "get", "back", "--print-value-only").stdout
        assert got.strip() == "hi"
    finally:
        code = member.stop()
    assert code == 0, member.log_tail()

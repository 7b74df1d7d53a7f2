"""etcd's peer HTTP endpoints on the same port as the gRPC peer service."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from etcdpy.netshare import RelayMode, SharedPortOptions
from etcdpy.peer.http import MemberInfo, PeerHttpHandler
from etcdpy.peer.options import TransportOptions

from .conftest import CLUSTER, RecordingSink, app, make_transport, url_of, wait_until

pytestmark = pytest.mark.timeout(120)

MEMBERS = (
    MemberInfo(0xBD92E7B3A3F5E7F1, "infra1", ("http://127.0.0.1:12380",),
               ("http://127.0.0.1:2379",)),
    MemberInfo(2**64 - 1, "", ("http://127.0.0.1:22380",), (), is_learner=True),
)


def _urlopen(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.parametrize("relay", list(RelayMode))
def test_members_and_version_beside_grpc(tmp_path: Path, relay: RelayMode) -> None:
    assert shutil.which("curl"), "curl is needed (Debian package curl)"

    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        handler = PeerHttpHandler(lambda: CLUSTER, lambda: MEMBERS, server_version="3.5.17")
        t1 = make_transport(1, s1, str(tmp_path))
        opts = TransportOptions(port_front=SharedPortOptions(relay=relay))
        t2 = make_transport(2, s2, str(tmp_path), http_handler=handler, options=opts)
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [url_of(t2)])
            t1.send([app(1, 2, k) for k in range(100)])
            base = url_of(t2)
            status, headers, body = await asyncio.to_thread(_urlopen, base + "/members")
            assert status == 200
            assert headers["Content-Type"] == "application/json"
            assert headers["X-Etcd-Cluster-Id"] == f"{CLUSTER:x}"
            assert json.loads(body) == [
                {"id": 0xBD92E7B3A3F5E7F1, "peerURLs": ["http://127.0.0.1:12380"],
                 "name": "infra1", "clientURLs": ["http://127.0.0.1:2379"]},
                {"id": 2**64 - 1, "peerURLs": ["http://127.0.0.1:22380"], "name": "",
                 "clientURLs": [], "isLearner": True},
            ]
            status, _, body = await asyncio.to_thread(_urlopen, base + "/version")
            assert status == 200
            assert json.loads(body) == {"etcdserver": "3.5.17", "etcdcluster": "3.5.0"}
            status, headers, body = await asyncio.to_thread(_urlopen, base + "/members", "POST")
            assert (status, headers["Allow"], body) == (405, "GET", b"Method Not Allowed\n")
            status, _, body = await asyncio.to_thread(_urlopen, base + "/raft")
            assert (status, body) == (404, b"404 page not found\n")

            out = await asyncio.to_thread(
                subprocess.run, ["curl", "-si", "--max-time", "10", base + "/members"],
                capture_output=True, check=True,
            )
            head, _, body = out.stdout.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert f"X-Etcd-Cluster-Id: {CLUSTER:x}".encode() in head
            assert json.loads(body)[0]["name"] == "infra1"
            out = await asyncio.to_thread(
                subprocess.run, ["curl", "-s", "--max-time", "10", base + "/version"],
                capture_output=True, check=True,
            )
            assert out.stdout == b'{"etcdserver":"3.5.17","etcdcluster":"3.5.0"}'

            # And the Raft stream on that same port carried everything meanwhile.
            await wait_until(lambda: len(s2.processed) == 100, "gRPC delivery on the shared port")
            assert [m.index for m in s2.processed] == list(range(100))
        finally:
            await t1.stop()
            await t2.stop()

    asyncio.run(main())


def test_grpc_only_mode_binds_the_port_directly(tmp_path: Path) -> None:
    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        direct = TransportOptions(shared_port=False)
        t1 = make_transport(1, s1, str(tmp_path), options=direct)
        t2 = make_transport(2, s2, str(tmp_path), options=direct)
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [url_of(t2)])
            t1.send([app(1, 2, 1)])
            await wait_until(lambda: len(s2.processed) == 1, "delivery without the front")
        finally:
            await t1.stop()
            await t2.stop()

    asyncio.run(main())

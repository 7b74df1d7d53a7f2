"""v2 discovery failures, side by side with etcd 3.5.1 (same flags, same registry: a real etcd
3.5.1 with --enable-v2 on loopback), and --discovery-proxy."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.cluster.membership import compute_member_id, format_id
from tests.e2e.cluster import wait_for
from tests.e2e.harness import Member, etcdctl, find_binary, free_port, single_member

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    """etcd 3.5.1 with the v2 API: the registry both etcdpy and etcd are pointed at."""
    member = single_member("etcd", tmp_path_factory.mktemp("registry"), name="registry",
                           extra_args=["--enable-v2"])
    member.start()
    try:
        member.wait_serving()
        yield member
    finally:
        member.stop()


def _put(url: str, value: str) -> None:
    request = urllib.request.Request(url, data=f"value={value}".encode(), method="PUT")
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status in (200, 201)


def _run(kind: str, tmp: Path, name: str, flags: list[str], timeout_s: float = 40.0
         ) -> tuple[int, list[dict[str, str]], Path]:
    """Start a member that is expected to exit; its exit status and JSON log lines."""
    peer, client = free_port(), free_port()
    data = tmp / f"{name}.{kind}"
    binary = [find_binary("etcd") or "etcd"] if kind == "etcd" else [sys.executable, "-m",
                                                                       "etcdpy"]
    argv = [*binary, "--name", name, "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}", *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO), "ETCDPY_DISCOVERY_TIMEOUT": "3"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env)
    lines = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    return done.returncode, lines, data


def _warned(lines: list[dict[str, str]]) -> list[tuple[str, str]]:
    # Registry indices differ between two runs; everything else must be equal.
    return [(x["msg"], re.sub(r"\[\d+\]", "[N]", x.get("error", "")))
            for x in lines if x["level"] in ("warn", "fatal")]


def _both(tmp: Path, flags: list[str]) -> list[tuple[str, str]]:
    ours = _run("etcdpy", tmp, "m1", flags)
    theirs = _run("etcd", tmp, "m1", flags)
    assert ours[0] == theirs[0] == 1
    assert _warned(ours[1]) == _warned(theirs[1])
    assert not ours[2].exists(), "a failed discovery leaves no data dir"
    return _warned(ours[1])


def test_missing_size_key(registry: Member, tmp_path: Path) -> None:
    warned = _both(tmp_path, ["--discovery", f"{registry.client_url}/v2/keys/disc/nosize"])
    assert warned[0] == ("failed to start etcd", "failed to join discovery cluster "
                         "(100: Key not found (/disc) [N])")


def test_bad_size_key(registry: Member, tmp_path: Path) -> None:
    _put(f"{registry.client_url}/v2/keys/bad/t/_config/size", "three")
    warned = _both(tmp_path, ["--discovery", f"{registry.client_url}/v2/keys/bad/t"])
    assert warned[1] == ("failed to bootstrap; discovery token was already used",
                         "failed to join discovery cluster (discovery: size key is bad)")


def test_not_a_discovery_endpoint(registry: Member, tmp_path: Path) -> None:
    warned = _both(tmp_path, ["--discovery", f"{registry.client_url}/version"])
    assert warned[0][1] == "failed to join discovery cluster (discovery: bad discovery endpoint)"


def test_malformed_url(registry: Member, tmp_path: Path) -> None:
    warned = _both(tmp_path, ["--discovery", "http://[::1/x"])
    assert warned[0][1] == "failed to join discovery cluster (parse \"http://[::1/x\": " \
                           "missing ']' in host)"


def test_full_cluster_and_fallback(registry: Member, tmp_path: Path) -> None:
    durl = f"{registry.client_url}/v2/keys/full/t"
    _put(f"{durl}/_config/size", "1")
    _put(f"{durl}/1234abcd", "other=http://127.0.0.1:1")
    warned = _both(tmp_path, ["--discovery", durl, "--discovery-fallback", "exit"])
    assert warned == [
        ("failed to bootstrap; discovery token was already used",
         "failed to join discovery cluster (discovery: cluster is full)"),
        ("do not reuse discovery token; generate a new one to bootstrap a cluster", ""),
    ]
    # etcd would become a v2 proxy; etcdpy has none and says so.
    code, lines, data = _run("etcdpy", tmp_path, "m1", ["--discovery", durl])
    assert code == 1 and not data.exists()
    assert lines[-2]["msg"] == "discovery cluster is full, falling back to proxy"
    assert "does not support the v2 proxy" in lines[-1]["msg"]


def test_this_member_already_registered(registry: Member, tmp_path: Path) -> None:
    durl = f"{registry.client_url}/v2/keys/dup/t"
    _put(f"{durl}/_config/size", "3")
    peer = free_port()
    flags = ["--discovery", durl, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}"]
    me = compute_member_id([f"http://127.0.0.1:{peer}"], durl)
    _put(f"{durl}/{format_id(me)}", f"m1=http://127.0.0.1:{peer}")
    warned = _both(tmp_path, flags)
    assert warned[1] == ("member has been registered with discovery service",
                         "discovery: found duplicate id")


def test_unreachable_registry_gives_up_after_the_retry_timeout(tmp_path: Path) -> None:
    code, lines, data = _run("etcdpy", tmp_path, "m1",
                             ["--discovery", f"http://127.0.0.1:{free_port()}/v2/keys/x"])
    assert code == 1 and not data.exists()
    assert any(x["msg"] == "failed to get from discovery server" for x in lines)
    assert _warned(lines)[-2:] == [
        ("failed to bootstrap; discovery token was already used",
         "failed to join discovery cluster (discovery: too many retries)"),
        ("do not reuse discovery token; generate a new one to bootstrap a cluster", ""),
    ]


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A forward HTTP proxy that alone knows where `registry.invalid` is."""

    target = ""
    seen: list[str] = []

    def _forward(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        url = self.path.replace("http://registry.invalid", self.target, 1)
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else None
        request = urllib.request.Request(url, data=body, method=self.command,
                                         headers={"Content-Type": self.headers.get(
                                             "Content-Type", "text/plain")})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                status, headers, data = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, headers, data = err.code, err.headers, err.read()
        self.send_response(status)
        for name in ("Content-Type", "X-Etcd-Index"):
            if headers.get(name):
                self.send_header(name, headers[name])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = _forward

    def log_message(self, *args: object) -> None:
        pass


def test_discovery_proxy_is_used_for_every_request(registry: Member, tmp_path: Path) -> None:
    durl_real = f"{registry.client_url}/v2/keys/proxied/t"
    _put(f"{durl_real}/_config/size", "1")
    _Proxy.target, _Proxy.seen = registry.client_url, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client, peer = free_port(), free_port()
    argv = [sys.executable, "-m", "etcdpy", "--name", "m1", "--data-dir", str(tmp_path / "m1"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--discovery", "http://registry.invalid/v2/keys/proxied/t",
            "--discovery-proxy", f"127.0.0.1:{server.server_address[1]}"]
    log = open(tmp_path / "m1.log", "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    log.close()
    try:
        def serving() -> bool:
            assert proc.poll() is None, (tmp_path / "m1.log").read_text()
            r = etcdctl([f"127.0.0.1:{client}"], "put", "via-proxy", "yes", check=False)
            return r.returncode == 0
        wait_for("member bootstrapped through the proxy", serving)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.shutdown()
        server.server_close()
    assert "GET http://registry.invalid/v2/keys/proxied/t/_config/size" \
        "?quorum=false&recursive=false&sorted=false" in _Proxy.seen
    assert any(s.startswith("PUT http://registry.invalid/v2/keys/proxied/t/") for s in _Proxy.seen)

"""The namespace lab itself: hosts reach each other, resolve through the lab's DNS, and vanish."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import netlab

REASON = netlab.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

# A one-shot TCP server and client run inside namespaces, so the test checks real routing.
SERVE_ONCE = """
import socket, sys
s = socket.create_server((sys.argv[1], 7000))
s.settimeout(20)
print("listening", flush=True)
c, _ = s.accept()
c.sendall(b"hello from " + sys.argv[1].encode())
c.close()
"""
CONNECT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 7000), timeout=3)
print(c.recv(100).decode())
"""
RESOLVE_SRV = """
import sys
import dns.resolver
answer = dns.resolver.resolve(sys.argv[1], "SRV")
for r in sorted(answer, key=lambda r: str(r.target)):
    print(str(r.target).rstrip("."), r.port)
import socket
print(socket.gethostbyname("m2.lab.test"))
"""


def test_hosts_talk_over_the_bridge_and_a_cut_link_isolates_one() -> None:
    with netlab.netlab(["m1", "m2", "m3"], tag="t") as lab:
        m1, m2, m3 = lab.hosts
        assert [h.address for h in lab.hosts] == ["10.213.0.1", "10.213.0.2", "10.213.0.3"]
        server = lab.popen(
            m2.command([sys.executable, "-c", SERVE_ONCE, m2.address]), stdout=subprocess.PIPE
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"listening"
        reply = lab.run(m1, [sys.executable, "-c", CONNECT, m2.address])
        assert reply.stdout.strip() == "hello from 10.213.0.2", reply.stderr
        lab.set_link(m3, up=False)
        cut = lab.run(m3, [sys.executable, "-c", CONNECT, m2.address])
        assert cut.returncode != 0
        namespaces = [h.netns for h in lab.hosts]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in namespaces)


def test_dnsmasq_in_the_lab_answers_srv_and_a_records_for_every_host() -> None:
    with netlab.netlab(["m1", "m2", "dns"], tag="d") as lab:
        dns_host = lab.host("dns")
        lab.start_dnsmasq(
            dns_host,
            [
                "address=/m1.lab.test/10.213.0.1",
                "address=/m2.lab.test/10.213.0.2",
                "srv-host=_etcd-server._tcp.lab.test,m1.lab.test,2380,0,100",
                "srv-host=_etcd-server._tcp.lab.test,m2.lab.test,2380,0,100",
            ],
        )
        lab.use_nameserver(dns_host.address)
        result = None
        for _ in range(50):  # dnsmasq needs a moment to bind
            result = lab.run(lab.host("m1"), [sys.executable, "-c", RESOLVE_SRV, "_etcd-server._tcp.lab.test"])
            if result.returncode == 0:
                break
        assert result is not None and result.returncode == 0, result.stderr if result else None
        assert result.stdout.split("\n")[:3] == ["m1.lab.test 2380", "m2.lab.test 2380", "10.213.0.2"]

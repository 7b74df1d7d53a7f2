"""etcd3gw (the JSON-gateway client OpenStack uses) against etcdpy and real etcd 3.5.1.

Each scenario runs on both servers and must give the same results; etcd3gw only speaks HTTP,
so this exercises the gateway on the shared client port.
"""

from __future__ import annotations

import threading
import time

import pytest
from etcd3gw.client import Etcd3Client

from tests.e2e.harness import Member

pytestmark = pytest.mark.e2e


def _client(member: Member) -> Etcd3Client:
    return Etcd3Client(host="127.0.0.1", port=member.client_port, timeout=10)


def _kv_scenario(client: Etcd3Client) -> list[object]:
    seen: list[object] = []
    assert client.put("gw/a", "1")
    assert client.put("gw/b", "2")
    seen.append(client.get("gw/a"))
    seen.append(sorted(v for v, _meta in client.get_prefix("gw/")))
    seen.append(client.create("gw/a", "again"))  # exists: not created
    seen.append(client.create("gw/c", "3"))
    seen.append(client.replace("gw/c", "3", "4"))
    seen.append(client.replace("gw/c", "nope", "5"))
    seen.append(client.get("gw/c"))
    seen.append(client.delete("gw/a"))
    seen.append(client.delete("gw/missing"))
    seen.append(client.delete_prefix("gw/"))
    seen.append(client.get_prefix("gw/"))
    return seen


def _lease_scenario(client: Etcd3Client) -> list[object]:
    lease = client.lease(ttl=30)
    client.put("gw/leased", "v", lease=lease)
    seen: list[object] = [
        lease.refresh(),
        0 < lease.ttl() <= 30,
        [k.decode() if isinstance(k, bytes) else k for k in lease.keys()],  # noqa: SIM118
    ]
    seen.append(lease.revoke())
    seen.append(client.get("gw/leased"))
    return seen


def _watch_scenario(client: Etcd3Client) -> list[object]:
    events, cancel = client.watch_prefix("gw/w/")
    got: list[object] = []

    def consume() -> None:
        for event in events:
            got.append((event.get("type", "PUT"), event["kv"]["key"]))
            if len(got) == 3:
                break

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    time.sleep(0.5)
    client.put("gw/w/1", "x")
    client.put("gw/w/2", "y")
    client.delete("gw/w/1")
    reader.join(timeout=10)
    cancel()
    return got


def _lock_scenario(client: Etcd3Client) -> list[object]:
    first = client.lock("gw-lock", ttl=30)
    second = client.lock("gw-lock", ttl=30)
    seen: list[object] = [first.acquire(), second.is_acquired(), first.is_acquired()]
    seen.append(first.release())
    seen.append(second.acquire())
    seen.append(second.release())
    return seen


@pytest.mark.parametrize("scenario", [_kv_scenario, _lease_scenario, _watch_scenario,
                                      _lock_scenario])
def test_etcd3gw_sees_etcdpy_as_etcd(real_etcd: Member, etcdpy_member: Member,
                                     scenario) -> None:  # type: ignore[no-untyped-def]
    expected = scenario(_client(real_etcd))
    got = scenario(_client(etcdpy_member))
    assert got == expected

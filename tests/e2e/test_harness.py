"""The process harness itself works, checked against real etcd."""

import pytest

from tests.e2e.harness import Member, etcdctl

pytestmark = pytest.mark.e2e


def test_real_etcd_put_get_and_kill(real_etcd: Member) -> None:
    etcdctl([real_etcd.endpoint], "put", "k", "v")
    out = etcdctl([real_etcd.endpoint], "get", "k", "--print-value-only").stdout
    assert out.strip() == "v"
    real_etcd.kill()
    assert real_etcd.proc is not None and real_etcd.proc.returncode == -9

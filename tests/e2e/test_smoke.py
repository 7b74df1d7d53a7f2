"""The quickest proof that a real etcdpy process serves etcdctl and stops cleanly."""

import pytest

from tests.e2e.harness import etcdctl, single_member

pytestmark = pytest.mark.e2e


def test_etcdpy_serves_etcdctl_and_stops_on_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    member = single_member("etcdpy", tmp_path)
    member.start()
    try:
        member.wait_serving()
        etcdctl([member.endpoint], "put", "greeting", "hello")
        got = etcdctl([member.endpoint], "get", "greeting", "--print-value-only").stdout
        assert got.strip() == "hello"
        status = etcdctl([member.endpoint], "endpoint", "status", "-w", "json").stdout
        assert '"leader"' in status
    finally:
        code = member.stop()
    assert code == 0, member.log_tail()
    assert "ready to serve client requests" in (member.log_path.read_text() if member.log_path else "")

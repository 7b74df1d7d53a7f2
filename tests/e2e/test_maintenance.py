"""Maintenance end to end: `etcdctl snapshot save` from a running etcdpy, restored with
`python -m etcdpy.utl snapshot restore` into a new data dir that a member then serves;
`etcdctl defrag` (and `--cluster`) giving space back and printing what etcd prints; Hash,
HashKV and alarms as etcd answers them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from etcdpy._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.cluster import grpc_status
from tests.e2e.harness import Member, etcdctl, free_port
from tests.e2e.pair import Pair

pytestmark = pytest.mark.e2e


def utl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "etcdpy.utl", *args], capture_output=True,
                          text=True, timeout=60)


def dump(member: Member) -> tuple[int, list[dict[str, object]]]:
    """The header revision and every key-value (with its revisions and lease) of a member."""
    out = json.loads(etcdctl([member.endpoint], "get", "", "--prefix", "-w", "json").stdout)
    return out["header"]["revision"], out.get("kvs", [])


def maintenance(member: Member) -> tuple[grpc.Channel, rpc_pb2_grpc.MaintenanceStub]:
    channel = grpc.insecure_channel(member.endpoint)
    return channel, rpc_pb2_grpc.MaintenanceStub(channel)


def test_snapshot_save_restore_and_serve(etcdpy_member: Member, tmp_path: Path) -> None:
    ep = [etcdpy_member.endpoint]
    lease = etcdctl(ep, "lease", "grant", "600").stdout.split()[1]
    for i in range(40):
        etcdctl(ep, "put", f"key/{i % 15}", f"value-{i}")
    etcdctl(ep, "put", "leased", "x", "--lease", lease)
    etcdctl(ep, "del", "key/3")
    etcdctl(ep, "compact", "20")
    revision, kvs = dump(etcdpy_member)

    backup = tmp_path / "backup.db"
    saved = etcdctl(ep, "snapshot", "save", str(backup))
    assert saved.stdout == f"Snapshot saved at {backup}\n"
    assert backup.stat().st_size % 512 == 32  # image + SHA-256, as etcd's files
    etcdctl(ep, "put", "after", "the snapshot")  # not in the backup

    status = utl("snapshot", "status", str(backup), "-w", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["revision"] == revision

    peer = free_port()
    restored = Member("etcdpy", "restored", tmp_path / "restored.data", free_port(), peer)
    result = utl("snapshot", "restore", str(backup), "--data-dir", str(restored.data_dir),
                 "--name", restored.name, "--initial-cluster", f"restored={restored.peer_url}",
                 "--initial-cluster-token", "restore-test",
                 "--initial-advertise-peer-urls", restored.peer_url)
    assert result.returncode == 0, result.stderr
    again = utl("snapshot", "restore", str(backup), "--data-dir", str(restored.data_dir))
    assert (again.returncode, again.stderr) == (
        1, f'Error: data-dir "{restored.data_dir}" not empty or could not be read\n')

    restored.start()
    try:
        restored.wait_serving()
        assert dump(restored) == (revision, kvs)
        assert lease in etcdctl([restored.endpoint], "lease", "list").stdout
        members = etcdctl([restored.endpoint], "member", "list").stdout
        assert members.count("\n") == 1 and f"restored, {restored.peer_url}" in members
        compacted = etcdctl([restored.endpoint], "get", "key/1", "--rev", "5", check=False)
        assert "required revision has been compacted" in compacted.stderr
        etcdctl([restored.endpoint], "put", "new", "write")
        assert dump(restored)[0] == revision + 1
    finally:
        restored.stop()


def test_restore_checks_the_hash(etcdpy_member: Member, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    etcdctl([etcdpy_member.endpoint], "put", "k", "v")
    etcdctl([etcdpy_member.endpoint], "snapshot", "save", str(backup))
    body = bytearray(backup.read_bytes())
    body[-100] ^= 0xFF  # inside the image, not the trailer
    backup.write_bytes(bytes(body))
    result = utl("snapshot", "restore", str(backup), "--data-dir", str(tmp_path / "r"))
    assert result.returncode == 1 and result.stderr.startswith("Error: expected sha256")
    assert not (tmp_path / "r").exists()
    backup.write_bytes(bytes(body[:-32]))  # no trailer: a file copied from a data dir
    result = utl("snapshot", "restore", str(backup), "--data-dir", str(tmp_path / "r"))
    assert result.stderr == "Error: snapshot missing hash but --skip-hash-check=false\n"


def test_defrag_gives_space_back_and_keeps_the_data(etcdpy_member: Member) -> None:
    ep = [etcdpy_member.endpoint]
    big = "x" * 20_000
    for i in range(60):
        etcdctl(ep, "put", f"big/{i % 10}", big + str(i))
    revision = int(json.loads(etcdctl(ep, "get", "big/0", "-w", "json").stdout)[
        "header"]["revision"])
    etcdctl(ep, "compact", str(revision))
    before = grpc_status(etcdpy_member)
    revision, kvs = dump(etcdpy_member)
    out = etcdctl(ep, "defrag")
    assert out.stdout == f"Finished defragmenting etcd member[{etcdpy_member.endpoint}]\n"
    after = grpc_status(etcdpy_member)
    assert after.dbSize < before.dbSize / 2  # five of six versions of every key were compacted
    assert after.dbSizeInUse <= after.dbSize
    assert dump(etcdpy_member) == (revision, kvs)
    out = etcdctl(ep, "defrag", "--cluster")
    assert out.stdout == f"Finished defragmenting etcd member[{etcdpy_member.client_url}]\n"
    etcdctl(ep, "put", "after", "defrag")  # the member still takes writes


def test_hash_is_stable_and_follows_writes(etcdpy_member: Member) -> None:
    etcdctl([etcdpy_member.endpoint], "put", "k", "v")
    channel, stub = maintenance(etcdpy_member)
    try:
        first = stub.Hash(rpc_pb2.HashRequest(), timeout=5)
        assert first.hash == stub.Hash(rpc_pb2.HashRequest(), timeout=5).hash
        assert first.header.revision == 2
        etcdctl([etcdpy_member.endpoint], "put", "k", "w")
        assert stub.Hash(rpc_pb2.HashRequest(), timeout=5).hash != first.hash
        stub.Defragment(rpc_pb2.DefragmentRequest(), timeout=10)  # same content, same hash
        third = stub.Hash(rpc_pb2.HashRequest(), timeout=5)
        etcdctl([etcdpy_member.endpoint], "put", "k", "w")  # a new revision: a new hash
        assert stub.Hash(rpc_pb2.HashRequest(), timeout=5).hash != third.hash
        chunks = list(stub.Snapshot(rpc_pb2.SnapshotRequest(), timeout=10))
        assert chunks[0].header.revision == 4 and chunks[-1].remaining_bytes == 0
        assert len(chunks[-1].blob) == 32 and all(c.version for c in chunks)
    finally:
        channel.close()


def test_hashkv_alarms_and_snapshot_save_as_etcd(pair: Pair, tmp_path: Path) -> None:
    for args in (("put", "a", "1"), ("put", "b", "2"), ("del", "a"), ("put", "a", "3")):
        pair.same(*args)
    hashes = [json.loads(r.stdout)[0]["HashKV"]["hash"]
              for r in pair.each("endpoint", "hashkv", "-w", "json")]
    assert hashes[0] == hashes[1]  # HashKV is computed exactly as etcd computes it
    pair.same("alarm", "list")
    pair.same("alarm", "disarm")
    for member in pair.members:
        path = tmp_path / f"{member.kind}.db"
        out = etcdctl([member.endpoint], "snapshot", "save", str(path))
        assert out.stdout == f"Snapshot saved at {path}\n"
        assert path.stat().st_size % 512 == 32


def test_status_output_formats_follow_etcdutl() -> None:
    from etcdpy.storage.backup import BackupStatus
    from etcdpy.utl import format_status

    status = BackupStatus(hash=0x24717457, revision=3, total_keys=8, total_size=20480)
    # The shapes etcdutl 3.5.1 prints for `snapshot status -w ...`.
    assert format_status(status, "simple") == "24717457, 3, 8, 20 kB"
    assert json.loads(format_status(status, "json")) == {
        "hash": 0x24717457, "revision": 3, "totalKey": 8, "totalSize": 20480}
    assert format_status(status, "table").splitlines() == [
        "+----------+----------+------------+------------+",
        "|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |",
        "+----------+----------+------------+------------+",
        "| 24717457 |        3 |          8 |      20 kB |",
        "+----------+----------+------------+------------+",
    ]
    assert format_status(status, "fields").splitlines() == [
        '"Hash" : 611415127', '"Revision" : 3', '"Keys" : 8', '"Size" : 20480']

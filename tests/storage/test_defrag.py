"""Defragmentation gives space back and keeps every byte of state; the state hash and backup
files (SHA-256 trailer, restore into a fresh member) behave as etcd's do."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from etcdpy.storage import schema
from etcdpy.storage.backup import (
    BackupError,
    has_hash_trailer,
    image_status,
    restore_state,
    stream_chunks,
    verified_image,
)
from etcdpy.storage.defrag import (
    compact_copy,
    defragment,
    last_txn_id,
    state_hash,
    swap_in,
    temp_copy_path,
)
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.members import MemberRecord, Members
from etcdpy.storage.mvcc import KVStore

from .conftest import SMALL, Applier


def _fill_and_compact(app: Applier, keys: int = 120, rounds: int = 4) -> None:
    big = b"x" * 2000
    for r in range(rounds):
        for i in range(keys):
            app.put(b"key/%04d" % i, big + b"%d" % r)
    app.compact(app.store.current_rev)
    app.store.run_compaction()


def test_defragment_shrinks_the_file_and_keeps_the_state(envs: MemberEnvs) -> None:
    store = KVStore(envs.state)
    app = Applier(store)
    _fill_and_compact(app)
    before_range = store.range(b"\0", b"\0")
    before_hash = state_hash(envs.state)
    before_kv = store.hash_kv()
    result = defragment(envs.state)
    assert result.size_before == envs.state.file_bytes() + (result.size_before - result.size_after)
    assert result.size_after < result.size_before / 2  # three of four versions were compacted
    store.refresh()
    assert store.range(b"\0", b"\0").kvs == before_range.kvs
    assert state_hash(envs.state) == before_hash
    assert store.hash_kv() == before_kv
    assert not temp_copy_path(envs.state).exists()
    app.put(b"after", b"defrag")  # the reopened env takes writes
    assert store.range(b"after", b"").kvs[0].value == b"defrag"


def test_defragmented_state_survives_reopening(tmp_path: Path) -> None:
    with MemberEnvs(tmp_path, SMALL) as envs:
        app = Applier(KVStore(envs.state))
        _fill_and_compact(app, keys=50, rounds=2)
        defragment(envs.state)
        app.put(b"last", b"1")
        expect = app.store.range(b"\0", b"\0").kvs
        rev, index = app.store.current_rev, app.store.consistent_index
    with MemberEnvs(tmp_path, SMALL) as envs:
        store = KVStore(envs.state)
        assert (store.current_rev, store.consistent_index) == (rev, index)
        assert store.range(b"\0", b"\0").kvs == expect


def test_a_copy_is_stale_once_anything_is_written(envs: MemberEnvs) -> None:
    """The server swaps a copy in only if the transaction id has not moved meanwhile."""
    app = Applier(KVStore(envs.state))
    app.put(b"a", b"1")
    txn = last_txn_id(envs.state)
    tmp = temp_copy_path(envs.state)
    compact_copy(envs.state, tmp)
    assert last_txn_id(envs.state) == txn  # copying is a read
    app.put(b"b", b"2")
    assert last_txn_id(envs.state) != txn
    tmp.unlink()


def test_swap_in_refuses_an_image_on_another_directory(envs: MemberEnvs, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.mdb"
    compact_copy(envs.state, other)
    with pytest.raises(AssertionError):
        swap_in(envs.state, other)


def test_state_hash_ignores_the_applied_index_but_not_the_data(tmp_path: Path) -> None:
    hashes = []
    for name, start_index in (("a", 0), ("b", 1000)):
        with MemberEnvs(tmp_path / name, SMALL) as envs:
            app = Applier(KVStore(envs.state))
            app.index = start_index  # another member applied other (empty) entries first
            app.put(b"k", b"v")
            hashes.append(state_hash(envs.state))
            app.put(b"k", b"w")
            hashes.append(state_hash(envs.state))
    assert hashes[0] == hashes[2] and hashes[1] == hashes[3]
    assert hashes[0] != hashes[1]


def _backup(envs: MemberEnvs, dest: Path) -> bytes:
    image = dest.with_suffix(".image")
    compact_copy(envs.state, image)
    body = b"".join(blob for blob, _ in stream_chunks(image, chunk_bytes=4096))
    image.unlink()
    dest.write_bytes(body)
    return body


def test_stream_chunks_frame_like_etcd(envs: MemberEnvs, tmp_path: Path) -> None:
    Applier(KVStore(envs.state)).put(b"k", b"v")
    image = tmp_path / "img"
    size = compact_copy(envs.state, image)
    chunks = list(stream_chunks(image, chunk_bytes=4096))
    assert [remaining for _, remaining in chunks[:-1]] == [
        size - 4096 * (i + 1) for i in range(len(chunks) - 1)]
    assert chunks[-2][1] == 0 and chunks[-1][1] == 0
    assert chunks[-1][0] == hashlib.sha256(image.read_bytes()).digest()
    assert has_hash_trailer(size + 32) and not has_hash_trailer(size)


def test_backup_restores_into_a_fresh_member(tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    with MemberEnvs(tmp_path / "old", SMALL) as envs:
        app = Applier(KVStore(envs.state))
        for i in range(20):
            app.put(b"k%02d" % i, b"v%d" % i)
        app.delete(b"k00")
        with envs.state.begin(write=True) as txn:
            Members(txn, envs.state.dbs).put(MemberRecord(1, "old", ("http://old:2380",), ()))
        expect = app.store.range(b"\0", b"\0").kvs
        rev = app.store.current_rev
        _backup(envs, backup)
    image = tmp_path / "image"
    verified_image(backup, image, skip_hash_check=False)
    status = image_status(image)
    assert status.revision == rev and status.total_size == image.stat().st_size
    with MemberEnvs(tmp_path / "new", SMALL) as envs:
        with envs.state.begin(write=True) as txn:  # what bootstrap writes for the new cluster
            Members(txn, envs.state.dbs).put(MemberRecord(7, "new", ("http://new:2380",), ()))
        restore_state(envs.state, image)
        store = KVStore(envs.state)
        assert store.current_rev == rev and store.consistent_index == 0
        assert store.range(b"\0", b"\0").kvs == expect
        with envs.state.begin() as txn:
            assert [m.id for m in Members(txn, envs.state.dbs).list()] == [7]
            assert txn.get(schema.META_CONSISTENT_INDEX, db=envs.state.dbs[schema.DB_META]) in (
                None, b"\0" * 8)


def test_backup_hash_is_checked(tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    with MemberEnvs(tmp_path / "m", SMALL) as envs:
        Applier(KVStore(envs.state)).put(b"k", b"v")
        body = _backup(envs, backup)
    corrupt = bytearray(body)
    corrupt[100] ^= 0xFF
    backup.write_bytes(bytes(corrupt))
    with pytest.raises(BackupError, match="expected sha256"):
        verified_image(backup, tmp_path / "img", skip_hash_check=False)
    verified_image(backup, tmp_path / "img", skip_hash_check=True)  # as asked: unchecked
    backup.write_bytes(body[:-32])  # a bare data file, as copied from a data dir
    with pytest.raises(BackupError, match="missing hash"):
        verified_image(backup, tmp_path / "img", skip_hash_check=False)
    verified_image(backup, tmp_path / "img", skip_hash_check=True)
    assert image_status(tmp_path / "img").total_keys > 0
    with pytest.raises(BackupError, match="no such file"):
        verified_image(tmp_path / "absent", tmp_path / "img", skip_hash_check=False)

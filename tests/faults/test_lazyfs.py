"""LazyFS keeps what was fsynced and forgets the rest on a power cut, under plain files, LMDB
and a real etcdpy member (where --unsafe-no-fsync must then lose acknowledged writes)."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.cluster import Writers, assert_no_ack_lost
from tests.e2e.harness import Member, etcdctl, free_port
from tests.faults.lazyfs import PAGE, FileState, LazyFS, unavailable_reason

# --- the page-cache model alone (no FUSE) ------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 5 * PAGE), st.binary(min_size=1, max_size=PAGE + 7)),
        st.tuples(st.just("truncate"), st.integers(0, 6 * PAGE), st.just(b"")),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(initial=st.binary(max_size=3 * PAGE), ops=_ops)
def test_file_state_reads_like_a_file_and_writes_through_exactly(
    tmp_path_factory: pytest.TempPathFactory, initial: bytes, ops: list[tuple[str, int, bytes]]
) -> None:
    """Against a bytearray as the reference: reads see every pending change, the backing file
    does not until write_through, and then holds exactly the reference."""
    path = tmp_path_factory.mktemp("fs") / "f"
    path.write_bytes(initial)
    fd = os.open(path, os.O_RDWR)
    try:
        state = FileState(fd=fd, size=len(initial), floor=len(initial))
        model = bytearray(initial)
        for op, n, data in ops:
            if op == "write":
                if n > len(model):
                    model += bytes(n - len(model))
                model[n: n + len(data)] = data
                state.write(n, data)
            else:
                del model[n:]
                model += bytes(n - len(model))
                state.truncate(n)
            assert state.size == len(model)
            assert state.floor <= state.size
            assert state.read(0, len(model) + PAGE) == bytes(model)
        assert path.read_bytes() == initial  # nothing reached the backing file yet
        state.write_through()
        assert path.read_bytes() == bytes(model)
    finally:
        os.close(fd)


# --- a mounted LazyFS ----------------------------------------------------------------------


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[LazyFS]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"LazyFS cannot run here: {reason}")
    with LazyFS(tmp_path / "backing", tmp_path / "mnt") as lazy:
        yield lazy


def _write(path: Path, data: bytes, fsync: bool, flags: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def test_unsynced_write_is_dropped_and_synced_write_kept(fs: LazyFS) -> None:
    lost, kept = fs.mount / "lost", fs.mount / "kept"
    _write(lost, b"not fsynced", fsync=False)
    _write(kept, b"fsynced", fsync=True)
    assert lost.read_bytes() == b"not fsynced"  # served from the overlay meanwhile
    assert (fs.backing / "lost").read_bytes() == b""  # the disk has not seen it
    dropped = fs.drop_unsynced()
    assert (dropped.files, dropped.vanished) == (1, 1)
    assert kept.read_bytes() == b"fsynced"
    assert not lost.exists()  # neither it nor its directory was fsynced: it never was


def test_a_directory_fsync_keeps_new_names_but_not_their_data(fs: LazyFS) -> None:
    (fs.mount / "d").mkdir()
    _write(fs.mount / "d" / "named", b"data never fsynced", fsync=False)
    dfd = os.open(fs.mount / "d", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    fs.drop_unsynced()
    assert (fs.mount / "d" / "named").read_bytes() == b""


def test_o_dsync_writes_and_fdatasync_are_durable(fs: LazyFS) -> None:
    _write(fs.mount / "dsync", b"written O_DSYNC", fsync=False, flags=os.O_DSYNC)
    fd = os.open(fs.mount / "fdatasync", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"then fdatasync")
        os.fdatasync(fd)
        os.write(fd, b" and more, unsynced")
    finally:
        os.close(fd)
    fs.drop_unsynced()
    assert (fs.mount / "dsync").read_bytes() == b"written O_DSYNC"
    assert (fs.mount / "fdatasync").read_bytes() == b"then fdatasync"


def test_truncate_and_rename_without_fsync_are_undone(fs: LazyFS) -> None:
    base = fs.mount / "base"
    _write(base, b"x" * 10_000, fsync=True)
    os.truncate(base, 100)
    assert base.stat().st_size == 100
    tmp = fs.mount / "image.tmp"
    _write(tmp, b"new image", fsync=False)
    os.replace(tmp, fs.mount / "image")  # the classic bug: rename without fsync first
    fs.drop_unsynced()
    assert base.read_bytes() == b"x" * 10_000
    assert not (fs.mount / "image").exists()


def test_mmap_reads_see_pending_writes(fs: LazyFS) -> None:
    """LMDB reads its pages through a shared mapping: that mapping must show the overlay."""
    path = fs.mount / "mapped"
    _write(path, bytes(3 * PAGE), fsync=True)
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, 3 * PAGE, prot=mmap.PROT_READ) as view:
            os.pwrite(fd, b"after the map", PAGE + 10)
            assert view[PAGE + 10: PAGE + 23] == b"after the map"
    finally:
        os.close(fd)
    fs.drop_unsynced()
    fd = os.open(path, os.O_RDONLY)
    try:
        with mmap.mmap(fd, 3 * PAGE, prot=mmap.PROT_READ) as view:
            assert view[PAGE + 10: PAGE + 23] == bytes(13)
    finally:
        os.close(fd)


def _lmdb_commits(path: Path, n: int, **flags: bool) -> None:
    env = lmdb.open(str(path), map_size=1 << 26, **flags)
    try:
        for i in range(n):
            with env.begin(write=True) as txn:
                txn.put(b"key%04d" % i, b"value %d" % i)
    finally:
        env.close()


def _lmdb_entries(path: Path) -> int:
    env = lmdb.open(str(path), map_size=1 << 26)
    try:
        with env.begin() as txn:
            return int(txn.stat()["entries"])
    finally:
        env.close()


def test_lmdb_sync_commits_survive_a_drop_and_nosync_commits_do_not(fs: LazyFS) -> None:
    commits = 40
    _lmdb_commits(fs.mount / "synced", commits, sync=True, metasync=True)
    # etcdpy's mode: data pages flushed per commit, the meta page only by the next commit or
    # an explicit env.sync() (which the Raft driver issues before acknowledging)
    _lmdb_commits(fs.mount / "nometasync", commits, sync=True, metasync=False)
    _lmdb_commits(fs.mount / "nosync", commits, sync=False)
    assert _lmdb_entries(fs.mount / "nosync") == commits  # kill -9 alone would keep them
    fs.drop_unsynced()
    assert _lmdb_entries(fs.mount / "synced") == commits
    # the last commit's meta page was never flushed: exactly that commit is undone
    assert _lmdb_entries(fs.mount / "nometasync") == commits - 1
    # MDB_NOSYNC never flushes, so every one of them was still only in the "page cache"
    assert _lmdb_entries(fs.mount / "nosync") < commits


# --- an etcdpy member on a LazyFS data dir -------------------------------------------------


def _member_on(fs: LazyFS, base: Path, extra_args: list[str]) -> Member:
    """A member whose data dir lives on the mount (its log stays outside, for post-mortems)."""
    data = base / "m1.data"
    (fs.mount / "m1.data").mkdir()
    data.symlink_to(fs.mount / "m1.data", target_is_directory=True)
    return Member("etcdpy", "m1", data, free_port(), free_port(), extra_args)


def _put_acknowledged(member: Member, n: int) -> dict[str, str]:
    acked = {}
    for i in range(n):
        key, value = f"power/{i:03d}", f"v{i}"
        etcdctl([member.endpoint], "put", key, value)  # raises unless acknowledged
        acked[key] = value
    return acked


def _read_prefix(member: Member) -> dict[str, str]:
    out = etcdctl([member.endpoint], "get", "power/", "--prefix").stdout.splitlines()
    return dict(zip(out[0::2], out[1::2], strict=True))


def _power_cut(fs: LazyFS, member: Member) -> None:
    member.kill()
    fs.drop_unsynced()


@pytest.mark.e2e
def test_acknowledged_puts_survive_kill_and_power_loss(fs: LazyFS, tmp_path: Path) -> None:
    member = _member_on(fs, tmp_path, [])
    try:
        member.start()
        member.wait_serving()
        acked = _put_acknowledged(member, 12)
        _power_cut(fs, member)
        member.start()
        member.wait_serving()
        assert _read_prefix(member) == acked
    finally:
        member.stop()


@pytest.mark.e2e
def test_no_acknowledged_put_is_lost_to_power_cuts_under_load(fs: LazyFS, tmp_path: Path) -> None:
    """Concurrent writers keep going while the member is killed and its unsynced writes
    dropped, three times: every put acknowledged before any of the cuts is still there."""
    member = _member_on(fs, tmp_path, [])
    writers = Writers([member.endpoint], count=4)
    try:
        member.start()
        member.wait_serving()
        writers.start()
        for cut in range(3):
            writers.wait_acks(40 * (cut + 1))
            _power_cut(fs, member)
            member.start()
            member.wait_serving()
        writers.wait_acks(40 * 4)
        writers.stop()
        assert_no_ack_lost(member, writers.acks)
    finally:
        writers.stop()
        member.stop()


@pytest.mark.e2e
def test_unsafe_no_fsync_loses_acknowledged_puts_on_power_loss(
    fs: LazyFS, tmp_path: Path
) -> None:
    member = _member_on(fs, tmp_path, ["--unsafe-no-fsync"])
    try:
        member.start()
        member.wait_serving()
        acked = _put_acknowledged(member, 12)
        assert _read_prefix(member) == acked
        assert fs.stats()["pending_bytes"] > 0
        _power_cut(fs, member)
        member.start()
        try:
            member.wait_serving()
        except (RuntimeError, TimeoutError):
            return  # the data dir is gone or unusable: the writes are lost as well
        survived = _read_prefix(member)
        assert survived.items() <= acked.items()
        assert len(survived) < len(acked), (
            "no fsync, yet every acknowledged put survived the power cut")
    finally:
        member.stop()

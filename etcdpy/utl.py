"""`python -m etcdpy.utl`: offline tools on backup files, like etcdutl 3.5's.

* ``snapshot status <file> [-w simple|json|table|fields]``: hash, revision, total keys and size
  of a backup written by ``etcdctl snapshot save`` from an etcdpy member.
* ``snapshot restore <file> --data-dir DIR [--name ...] [--initial-cluster ...]
  [--initial-cluster-token ...] [--initial-advertise-peer-urls ...] [--skip-hash-check]``: a new
  single-cluster data dir holding the backup's keys, revisions and leases, with the membership
  the flags describe (etcdutl's semantics; start every member of the new cluster on its own
  restored dir).

The files are etcdpy's (LMDB images with etcd's SHA-256 trailer), not etcd's bbolt files.
Errors are printed as ``Error: <message>`` with exit status 1, as etcdutl does.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import click

from etcdpy.cluster.bootstrap import BootstrapError, bootstrap_or_restart
from etcdpy.storage.backup import (
    BackupError,
    BackupStatus,
    image_status,
    restore_state,
    verified_image,
)
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.raft_log import LmdbRaftStorage

OUTPUT_FORMATS = ("simple", "json", "table", "fields")


def _fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _human_bytes(size: int) -> str:
    """go-humanize's Bytes (SI units, as etcdutl prints sizes): 20480 -> '20 kB'."""
    if size < 10:
        return f"{size} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    value = float(size)
    unit = 0
    while value >= 1000 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    return f"{value:.0f} {units[unit]}" if value >= 10 else f"{value:.1f} {units[unit]}"


def format_status(status: BackupStatus, write_out: str) -> str:
    size = _human_bytes(status.total_size)
    if write_out == "json":
        return json.dumps({"hash": status.hash, "revision": status.revision,
                           "totalKey": status.total_keys, "totalSize": status.total_size},
                          separators=(",", ":"))
    if write_out == "fields":
        return "\n".join([f'"Hash" : {status.hash}', f'"Revision" : {status.revision}',
                          f'"Keys" : {status.total_keys}', f'"Size" : {status.total_size}'])
    if write_out == "table":
        header = ("HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE")
        row = (f"{status.hash:x}", str(status.revision), str(status.total_keys), size)
        widths = [max(len(h), len(r)) + 2 for h, r in zip(header, row, strict=True)]
        line = "+" + "+".join("-" * w for w in widths) + "+"

        # etcdutl's table centres the titles and right-aligns the values
        titles = "|" + "|".join(h.center(w) for h, w in zip(header, widths, strict=True)) + "|"
        values = "|" + "|".join(f" {v.rjust(w - 2)} " for v, w in zip(row, widths, strict=True))
        return "\n".join([line, titles, line, values + "|", line])
    return f"{status.hash:x}, {status.revision}, {status.total_keys}, {size}"


@click.group()
def main() -> None:
    """Offline tools for etcdpy data (etcdutl's subset)."""


@main.group()
def snapshot() -> None:
    """Manages etcdpy node snapshots."""


@snapshot.command("status")
@click.argument("filename", type=click.Path(path_type=Path))
@click.option("-w", "--write-out", type=click.Choice(OUTPUT_FORMATS), default="simple",
              show_default=True, help="Output format.")
def snapshot_status(filename: Path, write_out: str) -> None:
    """Gets backend snapshot status of a given file."""
    with tempfile.TemporaryDirectory(prefix="etcdpyutl-") as tmp:
        image = Path(tmp) / "image.mdb"
        try:
            # The status of a file with a bad hash is still shown, as etcdutl shows it.
            verified_image(filename, image, skip_hash_check=True)
        except (BackupError, OSError) as err:
            _fail(str(err))
        try:
            status = image_status(image)
        except BackupError:
            _fail(f"{filename} is not an etcdpy snapshot")
    click.echo(format_status(status, write_out))


@snapshot.command("restore")
@click.argument("filename", type=click.Path(path_type=Path))
@click.option("--data-dir", default="", help="Path to the output data directory.")
@click.option("--wal-dir", default="", help="Not used: etcdpy keeps its log in the data dir.")
@click.option("--name", default="default", show_default=True,
              help="Human-readable name for this member.")
@click.option("--initial-cluster", default="default=http://localhost:2380", show_default=True,
              help="Initial cluster configuration for restore bootstrap.")
@click.option("--initial-cluster-token", default="etcd-cluster", show_default=True,
              help="Initial cluster token for the etcd cluster during restore bootstrap.")
@click.option("--initial-advertise-peer-urls", default="http://localhost:2380",
              show_default=True, help="List of this member's peer URLs to advertise.")
@click.option("--skip-hash-check", is_flag=True,
              help="Ignore snapshot integrity hash value (required if copied from data directory).")
def snapshot_restore(filename: Path, data_dir: str, wal_dir: str, name: str,
                     initial_cluster: str, initial_cluster_token: str,
                     initial_advertise_peer_urls: str, skip_hash_check: bool) -> None:
    """Restores an etcdpy member snapshot to an etcdpy directory."""
    target = Path(data_dir or f"{name}.etcd")
    if wal_dir:
        _fail("--wal-dir is not supported: etcdpy keeps its Raft log in the data dir")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        _fail(f'data-dir "{target}" not empty or could not be read')
    peer_urls = [u for u in initial_advertise_peer_urls.split(",") if u]
    created = not target.exists()
    try:
        with tempfile.TemporaryDirectory(prefix="etcdpyutl-") as tmp:
            image = Path(tmp) / "image.mdb"
            verified_image(filename, image, skip_hash_check)
            try:
                image_status(image)  # refuses a file that is not an LMDB image before writing
            except BackupError:
                raise BackupError(f"{filename} is not an etcdpy snapshot") from None
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            with MemberEnvs(target) as envs:
                bootstrap_or_restart(envs, LmdbRaftStorage(envs.raft), name, initial_cluster,
                                     initial_cluster_token, peer_urls, existing=False)
                restore_state(envs.state, image)
    except (BackupError, BootstrapError) as err:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        _fail(str(err))
    click.echo(f"restored snapshot {filename} into {target}", err=True)


if __name__ == "__main__":
    main()

"""The package and its command can be imported and report their versions."""

import subprocess
import sys

import etcdpy


def test_version_is_semver() -> None:
    parts = etcdpy.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_cli_version_names_the_etcd_api() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "etcdpy", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"etcdpy Version: {etcdpy.__version__}" in out
    assert f"etcd API Version: {etcdpy.ETCD_SERVER_VERSION}" in out

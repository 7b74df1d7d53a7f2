"""The `etcdpy` command line: etcd 3.5's flags, parsed with click."""

import click

from etcdpy import ETCD_SERVER_VERSION, __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    version=__version__,
    prog_name="etcdpy",
    message=f"etcdpy Version: %(version)s\netcd API Version: {ETCD_SERVER_VERSION}",
)
def main() -> None:
    """Start an etcd-compatible member."""
    raise click.UsageError("the server is not built yet")

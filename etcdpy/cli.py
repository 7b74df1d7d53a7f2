"""The `etcdpy` command: etcd 3.5's flags, `ETCD_*` variables and config file -> app.run().

Go's flag package (which etcd uses) accepts `-flag`, `--flag`, `--flag=value` and treats
bool flags as never taking a separate value; click does not.  So `main` first tokenizes
argv the Go way (`config.parse_argv`, which also produces etcd's error texts), then hands
click an unambiguous `--flag=value` argv.  Every etcd flag is a click option taking raw
text; `config.load` turns the given ones plus the environment into a validated Config.
No other logic lives here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from etcdpy import ETCD_SERVER_VERSION, __version__, allocator, gctuning, grpc_engine
from etcdpy import config as cfg

VERSION_TEXT = f"etcdpy Version: {__version__}\netcd API Version: {ETCD_SERVER_VERSION}"

# click parameter name (a Python identifier) -> etcd flag name.
_PARAMS: dict[str, str] = {name.replace("-", "_").replace(".", "_"): name for name in cfg.ALL_FLAGS}


def _flag_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One raw-text click option per etcd flag; None means "not on the command line"."""
    for param, name in reversed(_PARAMS.items()):
        func = click.option(f"--{name}", param, type=str, default=None)(func)
    return func


def _fail(err: cfg.ConfigError) -> NoReturn:
    """Report a configuration error where and how etcd does, then exit with its status."""
    for note in err.notices:
        click.echo(note.to_json(), err=True)
    if isinstance(err, cfg.FlagError):
        click.echo(f"{err.message}\n{cfg.USAGE}", err=True)
    elif isinstance(err, cfg.PlainConfigError):
        click.echo(err.message, err=True)
    else:
        for note in cfg.error_notices(err):
            click.echo(note.to_json(), err=True)
    sys.exit(err.exit_code)


@click.command(
    context_settings={"allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("rest", nargs=-1, type=click.UNPROCESSED)
@_flag_options
def command(rest: tuple[str, ...], **raw: str | None) -> None:
    """Start an etcd-compatible member."""
    given = {_PARAMS[p]: text for p, text in raw.items() if text is not None}
    try:
        cfg.reject_positional(rest)
        if cfg.parse_go_bool(given.pop("version", "false")):
            click.echo(VERSION_TEXT)
            return
        loaded = cfg.load(given, os.environ, rest)
    except cfg.ConfigError as err:
        _fail(err)
    for note in loaded.notices:
        click.echo(note.to_json(), err=True)

    from etcdpy import app  # the composition root; imported only when we really start

    app.run(loaded.config)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `etcdpy` and `python -m etcdpy`."""
    allocator.tune()
    gctuning.tune()
    grpc_engine.choose_poller()  # before anything imports grpc
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        parsed = cfg.parse_argv(args)
    except cfg.HelpRequested:
        click.echo(cfg.help_text(), nl=False)
        sys.exit(0)
    except cfg.FlagError as err:
        _fail(err)
    command.main(args=parsed.to_click_argv(), prog_name="etcdpy")

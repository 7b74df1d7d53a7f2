"""etcdpy.cli: the `etcdpy` command builds a Config and hands it to etcdpy.app.run.

`etcdpy.app` is written elsewhere; these tests put a small recording module in its place in
`sys.modules`.  The last tests run the real etcd 3.5.1 with the same bad flags as ours and
compare the error lines, so that a drift between the two shows up here.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import etcdpy
from etcdpy import ETCD_SERVER_VERSION, __version__, cli
from etcdpy import config as cfg
from etcdpy.config import Config
from tests.test_config import ETCD, FLAG_ERROR_CASES, SAFE, VALIDATION_CASES


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ETCD_"):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def collector_thresholds_restored() -> Iterator[None]:
    """`cli.main` sets the server's collector thresholds, which are not this process's."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Configs that `etcdpy.app.run` was called with."""
    calls: list[Config] = []
    fake = types.ModuleType("etcdpy.app")
    fake.run = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "etcdpy.app", fake)
    # `from etcdpy import app` reads the package attribute first: once another test has
    # imported the real etcdpy.app, the attribute must be replaced too.
    monkeypatch.setattr(etcdpy, "app", fake, raising=False)
    return calls


def run_main(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    code = info.value.code
    return code if isinstance(code, int) else (0 if code is None else 1)


def json_lines(text: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_flags_reach_app_run_as_a_config(started: list[Config]) -> None:
    code = run_main(["-name", "n1", "--snapshot-count", "5", "-pre-vote=false", "--enable-v2"])
    assert code == 0
    [config] = started
    assert (config.name, config.snapshot_count, config.pre_vote, config.enable_v2) == (
        "n1",
        5,
        False,
        True,
    )
    assert config.initial_cluster == "n1=http://localhost:2380"


def test_env_vars_reach_app_run(
    started: list[Config], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ETCD_NAME", "from-env")
    monkeypatch.setenv("ETCD_NO_SUCH_THING", "1")
    assert run_main([]) == 0
    assert started[0].name == "from-env"
    logged = json_lines(capsys.readouterr().err)
    assert {"msg": "unrecognized environment variable"}.items() <= logged[-1].items()
    assert logged[-1]["environment-variable"] == "ETCD_NO_SUCH_THING=1"


def test_config_file_wins(started: list[Config], tmp_path: Path) -> None:
    path = tmp_path / "etcd.yaml"
    path.write_text("name: from-file\n")
    assert run_main(["--name=from-flag", f"-config-file={path}"]) == 0
    assert started[0].name == "from-file"


def test_version_prints_ours_and_the_etcd_api(
    started: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["-version"]) == 0
    out = capsys.readouterr().out
    assert out == f"etcdpy Version: {__version__}\netcd API Version: {ETCD_SERVER_VERSION}\n"
    assert started == []


def test_help_goes_to_stdout_grouped(
    started: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["--name=x", "-h"]) == 0
    out = capsys.readouterr().out
    assert out == cfg.help_text()
    assert "Member:" in out and "Clustering:" in out and "  --listen-client-urls" in out
    assert started == []


def test_flag_error_prints_message_and_usage_exit_2(
    started: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["--foo"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["flag provided but not defined: -foo", "Usage:"]
    assert started == []


def test_validation_error_is_logged_exit_1(
    started: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["--election-timeout", "100"]) == 1
    [line] = json_lines(capsys.readouterr().err)
    assert (line["level"], line["msg"]) == ("warn", "failed to verify flags")
    assert line["error"].startswith("--election-timeout[100ms] should be at least")
    assert started == []


def test_shadowed_env_var_is_fatal(
    started: list[Config], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ETCD_NAME", "a")
    assert run_main(["--name=b"]) == 1
    [line] = json_lines(capsys.readouterr().err)
    assert line["level"] == "fatal"
    assert line["environment-variable"] == "ETCD_NAME"
    assert started == []


def test_yaml_url_error_is_printed_plain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "etcd.yaml"
    path.write_text("listen-client-urls: localhost\n")
    assert run_main([f"--config-file={path}"]) == 1
    assert capsys.readouterr().err == (
        "unexpected error setting up listen-client-urls: "
        "URL scheme must be http, https, unix, or unixs: localhost\n"
    )


def test_python_dash_m_etcdpy_reports_unknown_flags() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "etcdpy", "-bogus-flag"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "flag provided but not defined: -bogus-flag"


# --------------------------------------------------------------------------- against real etcd


def run_real_etcd(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETCD, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
        cwd=tmp_path,
    )


def error_line(stderr: str, status: int) -> str:
    """The line that carries the error: flag errors and panics first, else the log field."""
    if status == 2 and not stderr.startswith("{"):
        return stderr.splitlines()[0].removeprefix("panic: ")
    failed = [r for r in json_lines(stderr) if r["msg"] == "failed to verify flags"]
    return failed[0]["error"] if failed else stderr


CASES = [(extra, status) for extra, _, status in VALIDATION_CASES] + [
    (extra, 2) for extra, _ in FLAG_ERROR_CASES
]


@pytest.mark.e2e
@pytest.mark.parametrize(("extra", "status"), CASES, ids=[" ".join(e) for e, _ in CASES])
def test_same_error_as_real_etcd(
    extra: list[str], status: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f"--data-dir={tmp_path / 'data'}", *SAFE[1:], *extra]
    real = run_real_etcd(argv, tmp_path)
    assert real.returncode == status, real.stderr
    capsys.readouterr()
    assert run_main(argv) == status
    ours = capsys.readouterr().err
    assert error_line(ours, status) == error_line(real.stderr, status)


@pytest.mark.e2e
def test_real_etcd_accepts_every_flag_we_accept_as_etcd_351(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All our 3.5.1 flags at their defaults, then one bad value: both reach validation."""
    argv = [f"--data-dir={tmp_path / 'data'}"]
    for spec in cfg.ALL_FLAGS.values():
        if spec.name in cfg.NOT_IN_ETCD_3_5_1 or spec.name == "data-dir":
            continue
        if spec.default_text == "" and spec.kind in (cfg.Kind.URLS, cfg.Kind.DURATION):
            continue  # etcd's own parsers reject the empty text its defaults stand for
        argv.append(
            f"--{spec.name}"
            if spec.kind is cfg.Kind.IGNORED
            else f"--{spec.name}={spec.default_text}"
        )
    argv.append("--election-timeout=1")
    real = run_real_etcd(argv, tmp_path)
    assert real.returncode == 1, real.stderr
    assert run_main(argv) == 1
    expected = (
        "--election-timeout[1ms] should be at least as 5 times as --heartbeat-interval[100ms]"
    )
    assert error_line(real.stderr, 1) == expected
    assert error_line(capsys.readouterr().err, 1) == expected

"""The data-driven runner itself: parsing, comparing and rewriting."""

from __future__ import annotations

from pathlib import Path

import pytest

from .datadriven import Arg, TestData, parse_args, run_file


def test_parse_args() -> None:
    cmd, args = parse_args("add-nodes 3 voters=(1,2,3) index=2 flag")
    assert cmd == "add-nodes"
    assert args == [Arg("3"), Arg("voters", ("1", "2", "3")), Arg("index", ("2",)), Arg("flag")]


def echo(td: TestData) -> str:
    return f"{td.cmd}:{','.join(td.positional())}\n\n  "  # blank lines are dropped


def test_compare_and_rewrite(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("# header\na 1 2\n----\nwrong\nlines\n\nb\n----\nb:\n")
    with pytest.raises(AssertionError, match="t.txt:2: a output differs"):
        run_file(f, echo)
    run_file(f, echo, rewrite=True)
    assert f.read_text() == "# header\na 1 2\n----\na:1,2\n\nb\n----\nb:\n"
    run_file(f, echo)  # now it passes


def test_missing_separator_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "bad.txt"
    f.write_text("a\nno separator\n")
    with pytest.raises(ValueError, match="expected ----"):
        run_file(f, echo)

"""Runs every script in testdata/ through the interaction environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from .datadriven import run_file
from .interaction import Env

SCRIPTS = sorted((Path(__file__).parent / "testdata").glob("*.txt"))


def test_there_are_enough_scripts() -> None:
    assert len(SCRIPTS) >= 20


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script(path: Path, rewrite: bool) -> None:
    env = Env()
    run_file(path, env.handle, rewrite=rewrite)

"""Options for the Raft tests: `pytest tests/raft --rewrite` regenerates script output."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite the expected output of tests/raft/testdata/*.txt in place",
    )


@pytest.fixture
def rewrite(request: pytest.FixtureRequest) -> bool:
    try:
        return bool(request.config.getoption("--rewrite"))
    except ValueError:  # option not registered (conftest not loaded at startup)
        return False

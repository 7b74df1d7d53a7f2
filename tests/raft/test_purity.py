"""etcdpy.raft is a pure core: it imports only the stdlib, never I/O, clocks or threads,
and nothing from etcdpy outside itself.  Checked by parsing every module's imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import etcdpy.raft

PKG = Path(etcdpy.raft.__file__).parent
FORBIDDEN = {
    "asyncio",
    "time",
    "socket",
    "threading",
    "multiprocessing",
    "concurrent",
    "selectors",
    "subprocess",
    "grpc",
    "lmdb",
    "google",
    "os",
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, absolute-or-relative module name) of each import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
    return out


def test_every_module_is_checked() -> None:
    names = {p.stem for p in PKG.glob("*.py")}
    assert {"core", "rawnode", "log", "tracker", "types"} <= names


def _violations(path: Path) -> list[str]:
    problems: list[str] = []
    for level, name in _imports(path):
        if level > 0:
            # Relative imports must stay inside the package (one level: siblings).
            if level != 1:
                problems.append(f"{path.name}: relative import beyond etcdpy.raft")
            continue
        top = name.split(".")[0]
        if name == "etcdpy.raft" or name.startswith("etcdpy.raft."):
            continue
        if top == "etcdpy":
            problems.append(f"{path.name}: imports {name} from outside etcdpy.raft")
        elif top in FORBIDDEN:
            problems.append(f"{path.name}: imports forbidden module {name}")
        elif top not in sys.stdlib_module_names and top != "__future__":
            problems.append(f"{path.name}: imports non-stdlib module {name}")
    return problems


def test_raft_imports_only_the_stdlib_and_itself() -> None:
    problems = [p for path in sorted(PKG.glob("*.py")) for p in _violations(path)]
    assert problems == []


def test_the_checker_catches_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import time\nfrom etcdpy.storage import x\nfrom grpc import aio\n"
        "import yaml\nfrom .. import cli\nfrom . import types\nimport random\n"
    )
    assert _violations(bad) == [
        "bad.py: imports forbidden module time",
        "bad.py: imports etcdpy.storage from outside etcdpy.raft",
        "bad.py: imports forbidden module grpc",
        "bad.py: imports non-stdlib module yaml",
        "bad.py: relative import beyond etcdpy.raft",
    ]

"""storage/ sits below server/, peer/ and cluster/ and does no I/O scheduling of its
own: no asyncio, no grpc, no clock (the Lessor gets time injected)."""

from __future__ import annotations

import ast
from pathlib import Path

import etcdpy.storage

FORBIDDEN = ("asyncio", "grpc", "time", "etcdpy.server", "etcdpy.peer", "etcdpy.cluster",
             "etcdpy.app", "etcdpy.cli")
PKG = Path(etcdpy.storage.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level >= 3 and node.module:
            names.add("etcdpy." + node.module)  # from ...server import x inside mvcc/
        elif isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
            rel = path.relative_to(PKG).parts
            names.add(("etcdpy." if len(rel) == 1 else "etcdpy.storage.") + node.module)
    return names


def test_storage_imports_stay_in_their_layer() -> None:
    files = sorted(PKG.rglob("*.py"))
    assert len(files) > 10
    for f in files:
        for name in _imports(f):
            bad = [x for x in FORBIDDEN if name == x or name.startswith(x + ".")]
            assert not bad, f"{f.relative_to(PKG)} imports {name}"

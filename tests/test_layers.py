"""The dependency rules of DESIGN.md hold: import-linter's contracts (pyproject.toml) pass."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> str:
    local = Path(sys.executable).parent / "lint-imports"
    exe = str(local) if local.exists() else shutil.which("lint-imports")
    assert exe, "lint-imports (import-linter) is not installed: scripts/test installs it"
    return exe


def test_import_contracts_are_kept() -> None:
    result = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout

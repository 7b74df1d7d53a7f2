"""A small data-driven test runner (in the spirit of cockroachdb/datadriven).

A script is a sequence of blocks:

    # comments and blank lines between blocks are kept as they are
    command pos1 key=value key=(1,2,3)
    ----
    expected output, ending at the first blank line (or end of file)

Output never contains blank lines (the handler's blank lines are dropped), so one blank
line always ends a block.  `run_file(path, handler, rewrite=True)` writes the actual
output back into the file instead of comparing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_ARG = re.compile(r"(\S+?)=\(([^)]*)\)|(\S+?)=(\S+)|(\S+)")


@dataclass(frozen=True, slots=True)
class Arg:
    key: str
    vals: tuple[str, ...] = ()

    def val(self) -> str:
        assert len(self.vals) == 1, f"{self.key} wants exactly one value, has {self.vals}"
        return self.vals[0]


@dataclass(slots=True)
class TestData:
    __test__ = False  # not a pytest test class, despite the name

    pos: str  # "file:line" of the command, for error messages
    cmd: str
    args: list[Arg] = field(default_factory=list)
    expected: str = ""
    raw: str = ""  # the command line as written

    def positional(self) -> list[str]:
        return [a.key for a in self.args if not a.vals]

    def get(self, key: str, default: str | None = None) -> str | None:
        for a in self.args:
            if a.key == key and a.vals:
                return a.val()
        return default

    def get_list(self, key: str) -> list[str]:
        for a in self.args:
            if a.key == key:
                return list(a.vals)
        return []

    def has(self, key: str) -> bool:
        return any(a.key == key for a in self.args)


def parse_args(line: str) -> tuple[str, list[Arg]]:
    parts = line.split(None, 1)
    cmd = parts[0]
    args: list[Arg] = []
    for m in _ARG.finditer(parts[1] if len(parts) > 1 else ""):
        if m.group(1) is not None:
            vals = tuple(v.strip() for v in m.group(2).split(",") if v.strip())
            args.append(Arg(m.group(1), vals))
        elif m.group(3) is not None:
            args.append(Arg(m.group(3), (m.group(4),)))
        else:
            args.append(Arg(m.group(5)))
    return cmd, args


def parse(path: Path) -> tuple[list[str], list[tuple[int, TestData]]]:
    """Return the file's lines and each block with the line index its command is on."""
    lines = path.read_text().split("\n")
    blocks: list[tuple[int, TestData]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            i += 1
            continue
        start = i
        cmd, args = parse_args(line)
        i += 1
        if i >= len(lines) or lines[i] != "----":
            raise ValueError(f"{path}:{start + 1}: expected ---- after the command")
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        td = TestData(f"{path}:{start + 1}", cmd, args, "\n".join(out), raw=line)
        blocks.append((start, td))
    return lines, blocks


def _clean(output: str) -> str:
    return "\n".join(line.rstrip() for line in output.split("\n") if line.strip())


def run_file(path: Path, handler: Callable[[TestData], str], rewrite: bool = False) -> None:
    lines, blocks = parse(path)
    if not rewrite:
        for _, td in blocks:
            actual = _clean(handler(td))
            assert actual == td.expected, (
                f"{td.pos}: {td.cmd} output differs\n--- expected\n{td.expected}\n"
                f"--- actual\n{actual}"
            )
        return
    # Rewrite: keep everything outside expected outputs, replace each expected output.
    out: list[str] = []
    i = 0
    for start, td in blocks:
        out.extend(lines[i : start + 2])  # text before, the command and the ----
        actual = _clean(handler(td))
        if actual:
            out.extend(actual.split("\n"))
        i = start + 2 + (len(td.expected.split("\n")) if td.expected else 0)
    out.extend(lines[i:])
    path.write_text("\n".join(out))

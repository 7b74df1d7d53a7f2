"""Porcupine's histories with known verdicts (`data/linearizability/`), their parsers and models.

Two models: a single register with read/write/compare-and-set (the Jepsen etcd logs) and a map
of strings with get/put/append whose keys are independent (the `kv/` files). They exist to test
the generic search in `linearizability.py` against ground truth.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from tests.faults.linearizability import Item

DATA = Path(__file__).parent / "data" / "linearizability"


def verdicts() -> list[tuple[str, bool]]:
    """(file relative to DATA, linearizable) for every history, as porcupine's tests assert."""
    with (DATA / "verdicts.csv").open() as f:
        return [(row["file"], row["linearizable"] == "true") for row in csv.DictReader(f)]


# --- a register (Jepsen etcd logs) ---------------------------------------------------------------


class RegOp(IntEnum):
    READ = 0
    WRITE = 1
    CAS = 2


@dataclass(frozen=True, slots=True)
class RegCall:
    op: RegOp
    arg: int | None = None  # READ: the value read (None: no value yet); WRITE: the value
    new: int | None = None  # CAS: swap `arg` for `new`
    ok: bool = True  # CAS: whether it swapped
    unknown: bool = False  # the outcome is not known: applied blindly


# The register's state may legitimately be None (no value), which collides with the search's
# "step is illegal" answer, so the state is wrapped in a 1-tuple.
RegState = tuple[int | None]


class Register:
    def init(self) -> RegState:
        return (None,)

    def step(self, state: RegState, c: RegCall) -> RegState | None:
        (v,) = state
        if c.op == RegOp.READ:
            return state if c.unknown or c.arg == v else None
        if c.op == RegOp.WRITE:
            return (c.arg,)
        holds = v == c.arg
        if c.unknown or holds == c.ok:
            return (c.new,) if holds else state
        return None


_JEPSEN = re.compile(r"jepsen\.util - (\d+)\s+:(\w+)\s+:(\w+)\s+(.*)$")


def _int_or_none(text: str) -> int | None:
    return None if text == "nil" else int(text)


def parse_jepsen(path: Path) -> list[Item[RegCall]]:
    """Jepsen's log: `:ok`/`:fail :cas` are known; `:info` and missing returns are unknown."""
    pending: dict[int, tuple[int, str, str]] = {}  # process -> (time, f, invoked value)
    items: list[Item[RegCall]] = []
    lines = path.read_text().splitlines()
    for t, line in enumerate(lines):
        m = _JEPSEN.search(line)
        if m is None:
            continue
        proc, kind, f, value = int(m[1]), m[2], m[3], m[4].strip()
        if kind == "invoke":
            assert proc not in pending, "a Jepsen process runs one operation at a time"
            pending[proc] = (t, f, value)
            continue
        call, f0, invoked = pending.pop(proc)
        assert f0 == f
        if kind == "info" or (kind == "fail" and f == "read"):
            items.append(_unknown(call, f, invoked))
        elif f == "read":
            items.append(Item(call, t, RegCall(RegOp.READ, _int_or_none(value))))
        elif f == "write":
            items.append(Item(call, t, RegCall(RegOp.WRITE, int(value))))
        else:
            old, new = (int(x) for x in value.strip("[]").split())
            items.append(Item(call, t, RegCall(RegOp.CAS, old, new, ok=kind == "ok")))
    for call, f, invoked in pending.values():
        items.append(_unknown(call, f, invoked))
    # A read whose outcome is unknown constrains nothing: leave it out.
    return [it for it in items if not (it.payload.unknown and it.payload.op == RegOp.READ)]


def _unknown(call: int, f: str, invoked: str) -> Item[RegCall]:
    if f == "read":
        return Item(call, math.inf, RegCall(RegOp.READ, unknown=True))
    if f == "write":
        return Item(call, math.inf, RegCall(RegOp.WRITE, int(invoked), unknown=True))
    old, new = (int(x) for x in invoked.strip("[]").split())
    return Item(call, math.inf, RegCall(RegOp.CAS, old, new, unknown=True))


# --- a map of strings (kv files) -----------------------------------------------------------------


class KvOp(IntEnum):
    GET = 0
    PUT = 1
    APPEND = 2


@dataclass(frozen=True, slots=True)
class KvCall:
    op: KvOp
    key: str
    value: str  # GET: the value read


class StringMap:
    """One key of the map (the search runs per key): a string, initially empty."""

    def init(self) -> str:
        return ""

    def step(self, state: str, c: KvCall) -> str | None:
        if c.op == KvOp.GET:
            return state if c.value == state else None
        return c.value if c.op == KvOp.PUT else state + c.value


_KV = re.compile(
    r'\{:process (\d+), :type :(\w+), :f :(\w+), :key "([^"]*)", :value (nil|"[^"]*")\}'
)


def parse_kv(path: Path) -> list[Item[KvCall]]:
    pending: dict[int, tuple[int, str, str, str]] = {}
    items: list[Item[KvCall]] = []
    for t, line in enumerate(path.read_text().splitlines()):
        m = _KV.search(line)
        if m is None:
            continue
        proc, kind, f, key, raw = int(m[1]), m[2], m[3], m[4], m[5]
        value = "" if raw == "nil" else raw[1:-1]
        if kind == "invoke":
            pending[proc] = (t, f, key, value)
            continue
        assert kind == "ok", "the kv histories have only invoke and ok"
        call, f0, key0, invoked = pending.pop(proc)
        assert (f0, key0) == (f, key)
        out = value if f == "get" else invoked
        items.append(Item(call, t, KvCall(KvOp[f.upper()], key, out)))
    assert not pending, "every kv operation completes"
    return items

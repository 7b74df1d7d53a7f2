"""What clients saw during a fault run: the record both the harness and the checkers speak.

The harness's clients append one `Operation` per request they send, with the monotonic times of
invocation and completion, and one `WatchRecord` per watch stream. The checkers read nothing
else, so a history saved as JSON lines (`dump`/`load`) can be checked again later, or trimmed to
the part that fails.

The key space is small and fixed per run (a few keys), values are unique strings per write, so
a read names the write it saw.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO


class OpKind(StrEnum):
    GET = "get"  # Range of one key; `serializable` says which read
    RANGE = "range"  # Range over [key, range_end)
    PUT = "put"  # Put key=value, attached to `lease` when non-zero
    DELETE = "delete"  # DeleteRange of one key
    CAS = "cas"  # Txn: if mod_revision(key) == expected_mod_revision then put key=value
    LEASE_GRANT = "lease_grant"  # lease id chosen by the client (`lease`), TTL long enough to outlive the run
    LEASE_REVOKE = "lease_revoke"  # revoke `lease`: its keys are deleted at one revision


@dataclass(frozen=True, slots=True)
class Request:
    kind: OpKind
    key: str = ""
    range_end: str = ""  # RANGE only
    value: str = ""  # PUT/CAS: unique per write in a run
    lease: int = 0  # PUT: attach; LEASE_GRANT/LEASE_REVOKE: the lease
    expected_mod_revision: int = 0  # CAS: 0 means "the key does not exist"
    serializable: bool = False  # GET/RANGE: served by the member without ReadIndex


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: str
    mod_revision: int
    create_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Response:
    revision: int  # header.revision
    kvs: tuple[KeyValue, ...] = ()  # GET/RANGE
    succeeded: bool = True  # CAS: whether the compare held
    deleted: int = 0  # DELETE: deleted count


@dataclass(frozen=True, slots=True)
class Operation:
    """One request and what came back.

    `response is None` with `error` set: the outcome is unknown (timeout, lost connection): the
    request may or may not have taken effect, at any time after `call`, so `ret` is infinity.
    An error etcd guarantees was not applied (e.g. a failed precondition, "lease not found")
    is `definite_failure=True`: it took no effect.
    """

    client: int
    call: float
    ret: float
    request: Request
    response: Response | None = None
    error: str = ""
    definite_failure: bool = False

    def __post_init__(self) -> None:
        assert self.call <= self.ret, "an operation completes after it starts"
        assert (self.response is None) == bool(self.error), "either a response or an error"
        assert not self.definite_failure or self.response is None
        assert self.response is not None or self.definite_failure or math.isinf(self.ret), (
            "an unknown outcome may take effect at any later time"
        )

    @property
    def unknown(self) -> bool:
        return self.response is None and not self.definite_failure


class EventType(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    kv: KeyValue  # for DELETE: key, mod_revision = the delete's revision, value ""
    prev_kv: KeyValue | None = None  # when the watch asked for prev_kv and there was one


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """One WatchResponse as received (events of one response arrive together)."""

    received: float  # monotonic time
    header_revision: int
    events: tuple[WatchEvent, ...] = ()
    progress_notify: bool = False  # an empty response that is a bookmark
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""


@dataclass(slots=True)
class WatchRecord:
    """A watch stream: what it asked for and every response it got, in arrival order."""

    client: int
    key: str
    range_end: str
    start_revision: int  # 0: from "now"
    prev_kv: bool
    progress_notify: bool
    responses: list[WatchResponse] = field(default_factory=list)


@dataclass(slots=True)
class History:
    seed: int
    keys: tuple[str, ...]
    operations: list[Operation] = field(default_factory=list)
    watches: list[WatchRecord] = field(default_factory=list)


# --- JSON lines -------------------------------------------------------------------------------


def dump(history: History, out: IO[str]) -> None:
    """One JSON object per line: a header, then operations, then watches."""
    out.write(json.dumps({"seed": history.seed, "keys": list(history.keys)}) + "\n")
    for op in history.operations:
        row = asdict(op)
        row["ret"] = None if math.isinf(op.ret) else op.ret
        out.write(json.dumps({"op": row}) + "\n")
    for watch in history.watches:
        out.write(json.dumps({"watch": asdict(watch)}) + "\n")


def save(history: History, path: Path) -> None:
    with path.open("w") as out:
        dump(history, out)


def load(lines: Iterable[str]) -> History:
    rows = iter(lines)
    head = json.loads(next(rows))
    history = History(seed=head["seed"], keys=tuple(head["keys"]))
    for line in rows:
        if not line.strip():
            continue
        row = json.loads(line)
        if "op" in row:
            history.operations.append(_operation(row["op"]))
        else:
            history.watches.append(_watch(row["watch"]))
    return history


def _kv(row: dict | None) -> KeyValue | None:
    return None if row is None else KeyValue(**row)


def _operation(row: dict) -> Operation:
    request = Request(**{**row["request"], "kind": OpKind(row["request"]["kind"])})
    response = None
    if row["response"] is not None:
        r = row["response"]
        kvs = tuple(KeyValue(**kv) for kv in r["kvs"])
        response = Response(**{**r, "kvs": kvs})
    ret = math.inf if row["ret"] is None else row["ret"]
    return Operation(**{**row, "ret": ret, "request": request, "response": response})


def _watch(row: dict) -> WatchRecord:
    responses = [
        WatchResponse(
            **{
                **r,
                "events": tuple(
                    WatchEvent(EventType(e["type"]), KeyValue(**e["kv"]), _kv(e["prev_kv"]))
                    for e in r["events"]
                ),
            }
        )
        for r in row["responses"]
    ]
    return WatchRecord(**{**row, "responses": responses})


def load_path(path: Path) -> History:
    with path.open() as f:
        return load(f)


def operations_by_client(history: History) -> Iterator[tuple[int, list[Operation]]]:
    clients = sorted({op.client for op in history.operations})
    for client in clients:
        yield client, [op for op in history.operations if op.client == client]

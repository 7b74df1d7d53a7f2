"""The simulated application: a tiny key-value state machine fed by committed entries.

A normal entry's data is either empty (the leader's no-op on election) or `put <key>
<value>`.  The state maps key -> (value, index of the entry that wrote it); the index is
what lets the read checker tell how fresh a read was.  Snapshots carry the state as a
deterministic byte string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: str

    def encode(self) -> bytes:
        return f"put {self.key} {self.value}".encode()

    @staticmethod
    def decode(data: bytes) -> Put | None:
        """The Put in data, or None for an entry that is not a put (e.g. the no-op)."""
        if not data.startswith(b"put "):
            return None
        _, key, value = data.decode().split(" ")
        return Put(key, value)


@dataclass(frozen=True, slots=True)
class Versioned:
    value: str
    index: int  # log index of the put that wrote value


class KVStore:
    """Invariant: applied only increases by one per apply() (or jumps by restore())."""

    def __init__(self) -> None:
        self.data: dict[str, Versioned] = {}
        self.applied = 0

    def apply(self, index: int, data: bytes) -> None:
        assert index == self.applied + 1, (index, self.applied)
        put = Put.decode(data)
        if put is not None:
            self.data[put.key] = Versioned(put.value, index)
        self.applied = index

    def skip(self, index: int) -> None:
        """Account for a non-KV entry (a conf change) at index."""
        assert index == self.applied + 1, (index, self.applied)
        self.applied = index

    def get(self, key: str) -> Versioned | None:
        return self.data.get(key)

    def encode(self) -> bytes:
        items = {k: [v.value, v.index] for k, v in sorted(self.data.items())}
        return json.dumps({"applied": self.applied, "data": items}, sort_keys=True).encode()

    @staticmethod
    def decode(blob: bytes) -> KVStore:
        kv = KVStore()
        if not blob:
            return kv  # the bootstrap snapshot carries no state
        obj = json.loads(blob)
        kv.applied = int(obj["applied"])
        kv.data = {k: Versioned(v, int(i)) for k, (v, i) in obj["data"].items()}
        return kv

"""A deterministic write workload and its pure model, shared by the crash test and
its child process.  Batch ``i`` (applied index ``i``) does one or two write
requests whose content depends only on ``i``."""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdpy.storage.mvcc import WriteBatch

NKEYS = 40


@dataclass
class Model:
    rev: int = 1
    kvs: dict[bytes, tuple[bytes, int, int, int]] = field(default_factory=dict)  # val,c,m,v

    def put(self, key: bytes, value: bytes, rev: int) -> None:
        old = self.kvs.get(key)
        create, version = (old[1], old[3] + 1) if old else (rev, 1)
        self.kvs[key] = (value, create, rev, version)


def ops(i: int) -> list[list[tuple[str, bytes, bytes]]]:
    """Write requests of batch i: each a list of (op, key, value-or-range_end)."""
    reqs: list[list[tuple[str, bytes, bytes]]] = [
        [("put", b"k%02d" % (i % NKEYS), b"v%d" % i), ("put", b"last", b"%d" % i)]
    ]
    if i % 5 == 0:
        reqs.append([("del", b"k%02d" % ((i * 7) % NKEYS), b"")])
    if i % 11 == 0:
        # a long key too, to exercise long-key buckets under crashes
        reqs.append([("put", b"L" * 700 + b"%d" % (i % 3), b"x" * (i % 200))])
    return reqs


def apply_model(m: Model, i: int) -> None:
    for req in ops(i):
        rev = m.rev + 1
        changed = False
        for op, key, val in req:
            if op == "put":
                m.put(key, val, rev)
                changed = True
            elif key in m.kvs:
                del m.kvs[key]
                changed = True
        if changed:
            m.rev = rev


def apply_store(batch: WriteBatch, i: int) -> None:
    for req in ops(i):
        w = batch.txn()
        for op, key, val in req:
            if op == "put":
                w.put(key, val)
            else:
                w.delete_range(key, val)
        w.end()

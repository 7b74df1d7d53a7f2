"""``KeyValue`` / ``Event`` value objects and the stored value encoding.

The revision DB stores, like etcd, the protobuf wire encoding of ``mvccpb.KeyValue``
(fields 1 key, 2 create_revision, 3 mod_revision, 4 version, 5 value, 6 lease; zero
values omitted; fields in number order, which is what Go's marshaller emits).  Those
exact bytes are what HashKV checksums, so we encode them here with a few lines of
varint code rather than building a protobuf object per key: it keeps the storage
layer independent of generated code, and a test cross-checks the bytes against
``etcdpy._pb`` when it is present.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0


class EventType(IntEnum):
    PUT = 0
    DELETE = 1


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    # for DELETE: key and mod_revision (= the deletion revision) only, as etcd sends
    kv: KeyValue
    prev_kv: KeyValue | None = None


def _varint(out: bytearray, n: int) -> None:
    n &= _U64  # negative int64 -> 10-byte two's complement varint, as protobuf does
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def encode_kv(kv: KeyValue) -> bytes:
    out = bytearray()
    if kv.key:
        out.append(0x0A)
        _varint(out, len(kv.key))
        out += kv.key
    for tag, n in ((0x10, kv.create_revision), (0x18, kv.mod_revision), (0x20, kv.version)):
        if n:
            out.append(tag)
            _varint(out, n)
    if kv.value:
        out.append(0x2A)
        _varint(out, len(kv.value))
        out += kv.value
    if kv.lease:
        out.append(0x30)
        _varint(out, kv.lease)
    return bytes(out)


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
    n = 0
    shift = 0
    for _ in range(10):  # a varint has at most 10 bytes
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return n, i
        shift += 7
    raise ValueError("varint too long")


def _int64(n: int) -> int:
    n &= _U64
    return n - (1 << 64) if n >= 1 << 63 else n


def decode_kv(b: bytes) -> KeyValue:
    """Decode any valid KeyValue encoding (field order free, unknown fields skipped)."""
    key = value = b""
    ints = [0, 0, 0, 0, 0, 0, 0]
    i = 0
    end = len(b)
    while i < end:
        tag, i = _read_varint(b, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            n, i = _read_varint(b, i)
            if field < len(ints):
                ints[field] = _int64(n)
        elif wire == 2:
            ln, i = _read_varint(b, i)
            chunk = b[i : i + ln]
            i += ln
            if field == 1:
                key = chunk
            elif field == 5:
                value = chunk
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return KeyValue(key, ints[2], ints[3], ints[4], value, ints[6])

"""CRC-32C (Castagnoli), the checksum etcd's Hash/HashKV use.

Uses the ``crc32c`` package (hardware accelerated) when installed, else a table
driven pure-Python fallback that gives the same values, only slower.
"""

from __future__ import annotations

from collections.abc import Callable

_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c_pure(crc: int, data: bytes) -> int:
    c = crc ^ 0xFFFFFFFF
    t = _TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _select() -> Callable[[int, bytes], int]:
    try:
        import crc32c  # type: ignore[import-not-found]
    except ImportError:
        return crc32c_pure

    def fast(crc: int, data: bytes) -> int:
        return int(crc32c.crc32c(data, value=crc))

    return fast


crc32c_update = _select()

"""CRC-32C: the pure fallback and the selected implementation give the standard values."""

from __future__ import annotations

import pytest

from etcdpy.storage.mvcc.hashing import crc32c_pure, crc32c_update

# the usual check value and RFC 3720 (iSCSI) test vectors
VECTORS = [
    (b"", 0),
    (b"123456789", 0xE3069283),
    (b"\x00" * 32, 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
]


@pytest.mark.parametrize("impl", [crc32c_pure, crc32c_update])
def test_vectors_and_incremental(impl) -> None:  # type: ignore[no-untyped-def]
    for data, want in VECTORS:
        assert impl(0, data) == want
    assert impl(impl(0, b"12345"), b"6789") == 0xE3069283

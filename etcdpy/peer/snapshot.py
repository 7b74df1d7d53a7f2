"""Snapshot data in chunks: read on the sender, reassembled into a file on the receiver.

A MsgSnap's data can be the whole state database (hundreds of MB), so it never travels inside
one gRPC message and never sits in memory whole: the sender reads `CHUNK_BYTES` at a time in a
worker thread (file reads and hashing release the GIL), and the receiver appends each chunk to
a temporary file. Only when the size and SHA-256 match does the receiver hand the message and
the file to the node.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SnapshotPayload:
    """What a MsgSnap carries over the wire: `size` bytes produced by `open()`.

    `open` is called in a worker thread and must return a stream positioned at the start of
    the data; the transport reads it to the end (exactly `size` bytes) and closes it.
    """

    size: int
    open: Callable[[], BinaryIO]
    # When set, called in a worker thread before the send to produce the real payload (e.g.
    # copy a database), so the event loop never waits for it; `size` and `open` are unused.
    prepare: Callable[[], SnapshotPayload] | None = None

    def __post_init__(self) -> None:
        assert self.size >= 0

    @staticmethod
    def deferred(prepare: Callable[[], SnapshotPayload]) -> SnapshotPayload:
        return SnapshotPayload(0, lambda: io.BytesIO(b""), prepare)

    @staticmethod
    def from_bytes(data: bytes) -> SnapshotPayload:
        return SnapshotPayload(len(data), lambda: io.BytesIO(data))

    @staticmethod
    def from_file(path: str) -> SnapshotPayload:
        """The file must not change until the send has been reported."""
        return SnapshotPayload(os.path.getsize(path), lambda: open(path, "rb"))  # noqa: SIM115


class SnapshotReader:
    """Reads a payload chunk by chunk (blocking; call from a worker thread)."""

    def __init__(self, payload: SnapshotPayload) -> None:
        self._payload = payload
        self._stream: BinaryIO | None = None
        self._sent = 0
        self._hash = hashlib.sha256()

    def read_chunk(self) -> bytes:
        """The next chunk; b"" once all `size` bytes have been read. Raises if the source
        is shorter than announced, since a short snapshot must fail, not install."""
        if self._stream is None:
            self._stream = self._payload.open()
        want = min(CHUNK_BYTES, self._payload.size - self._sent)
        if want == 0:
            return b""
        data = self._stream.read(want)
        if len(data) != want:
            raise OSError(
                f"snapshot source ended at {self._sent + len(data)} of {self._payload.size} bytes"
            )
        self._sent += want
        self._hash.update(data)
        return data

    def digest(self) -> bytes:
        assert self._sent == self._payload.size, "digest before the whole payload was read"
        return self._hash.digest()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class SnapshotWriter:
    """Reassembles a received payload in a temporary file under `directory` (blocking calls)."""

    def __init__(self, directory: str, expected_size: int) -> None:
        os.makedirs(directory, exist_ok=True)
        fd, self.path = tempfile.mkstemp(prefix="recv-", suffix=".snap", dir=directory)
        self._file = os.fdopen(fd, "wb")
        self._expected = expected_size
        self.received = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        if self.received + len(data) > self._expected:
            raise ValueError(
                f"snapshot larger than announced: {self.received + len(data)} > {self._expected}"
            )
        self._file.write(data)
        self._hash.update(data)
        self.received += len(data)

    def finish(self, sha256: bytes) -> str:
        """Check completeness and checksum, flush, and return the file's path."""
        if self.received != self._expected:
            raise ValueError(f"snapshot cut off: {self.received} of {self._expected} bytes")
        if sha256 != self._hash.digest():
            raise ValueError("snapshot checksum mismatch")
        self._file.close()
        return self.path

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

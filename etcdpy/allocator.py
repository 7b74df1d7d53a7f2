"""Fixing glibc's mmap threshold, so that asyncio's socket reads do not each cost an mmap.

asyncio reads a socket with ``recv(256 KiB)``: CPython allocates 256 KiB for the result and
shrinks it to what arrived. glibc serves a block at or above its mmap threshold (128 KiB
when a process starts) with a fresh mapping, so every such read costs mmap, page faults,
mremap and munmap. glibc raises the threshold by itself only when a mapped block is freed
at full size, which shrunk read buffers never are: whether a process pays for every read
depended on whether something else it did had freed a large block. Measured with the
bench's lease workload (16 keep-alive streams through the shared port's asyncio relay): a
fresh member answered 7,200-8,800 keep-alives/s with a third of its event loop inside that
``recv``, a member that had served puts first 17,000-18,000/s.

Every etcdpy process (member, read workers, the port front's child) calls :func:`tune`
first thing. Fixing the threshold turns off glibc's adjustment of both it and the trim
threshold, so the trim threshold is set too, above the mmap threshold: otherwise freeing
the unused tail of a read buffer at the top of the heap would give it back to the kernel,
and the next read would take it again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Final

# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD: Final = -1
M_MMAP_THRESHOLD: Final = -3

MMAP_THRESHOLD_BYTES: Final = 1 << 20  # above asyncio's 256 KiB reads, with room to spare
TRIM_THRESHOLD_BYTES: Final = 4 << 20


def tune() -> bool:
    """Set the thresholds; False where the C library is not glibc (nothing to fix there)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (musl has mallopt stubs)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))

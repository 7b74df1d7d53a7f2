"""allocator.tune: asyncio-sized socket reads stop costing a fresh mapping each."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from etcdpy import allocator

# In a fresh interpreter: 2,000 reads the way asyncio reads (recv(256 KiB) of a few bytes),
# then the minor page faults they cost. A read served by a fresh mapping faults at least
# once (the kernel hands out zeroed pages on first touch); one served from the heap reuses
# pages already touched.
READS = 2000
PROBE = f"""
import resource, socket, sys
from etcdpy import allocator
if sys.argv[1] == "tuned":
    assert allocator.tune()
a, b = socket.socketpair()
for _ in range(20):  # the interpreter's own first-time costs, not counted
    a.send(b"x" * 40); b.recv(256 * 1024)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({READS}):
    a.send(b"x" * 40)
    assert len(b.recv(256 * 1024)) == 40
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, timeout=60)
    return int(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="the mmap threshold is glibc's: other C libraries "
                    "have none to fix, and tune() leaves them alone")
def test_tuned_reads_reuse_the_heap_instead_of_mapping_each_buffer() -> None:
    untuned, tuned = _faults("plain"), _faults("tuned")
    assert untuned >= READS, f"expected a fault per read without tuning, got {untuned}"
    assert tuned < READS // 20, f"{tuned} faults for {READS} reads after tune()"


def test_tune_says_whether_it_applied() -> None:
    # glibc (the Dockerfile's and CI's C library): applied; elsewhere it declines, never raises
    assert allocator.tune() is GLIBC

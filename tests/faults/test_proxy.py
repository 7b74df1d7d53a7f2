"""The peer-link proxy: passes bytes in order, holds them when paused, resets when told."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.e2e.harness import free_port
from tests.faults.cluster import REPO


class Echo:
    """A TCP server on loopback that sends back whatever it receives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)


@pytest.fixture
def proxy() -> Iterator[tuple[subprocess.Popen[str], int]]:
    echo = Echo()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.proxy", f"127.0.0.1:{port}",
         f"127.0.0.1:{echo.port}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc, port
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        echo.sock.close()


def command(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_passes_bytes_in_order_even_with_jitter(proxy: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = proxy
    assert command(proc, "delay 5 5") == "ok"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        expected = b""
        for i in range(50):
            msg = f"<{i}>".encode()
            expected += msg
            s.sendall(msg)
        assert recv_exactly(s, len(expected)) == expected


def test_pause_holds_bytes_until_heal(proxy: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = proxy
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"before")
        assert recv_exactly(s, 6) == b"before"
        assert command(proc, "pause") == "ok"
        s.sendall(b"held")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(10)
        assert command(proc, "heal") == "ok"
        s.settimeout(10)
        assert recv_exactly(s, 4) == b"held"


def test_blackhole_resets_the_connection_at_heal(proxy: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = proxy
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert command(proc, "blackhole") == "ok"
        s.sendall(b"lost")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(10)
        assert command(proc, "heal") == "ok"
        s.settimeout(10)
        with pytest.raises(ConnectionResetError):
            s.recv(10) or s.send(b"x") or s.recv(10)
    # A new connection after the heal passes again.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"again")
        assert recv_exactly(s, 5) == b"again"


def test_drop_everything_resets_connections(proxy: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = proxy
    assert command(proc, "drop 1.0") == "ok"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            s.recv(10) or s.recv(10)


def test_unknown_command_is_refused(proxy: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = proxy
    assert command(proc, "explode").startswith("error")

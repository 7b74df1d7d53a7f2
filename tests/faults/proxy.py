"""A userspace TCP proxy in front of one member's peer port: delay, jitter, loss and pauses.

The kernel here has no netem, so (like etcd's robustness tests) peer-link faults are made in
user space. One proxy runs per member, in the member's own network namespace, listening on the
member's advertised peer address and forwarding to the port the member really listens on; all
Raft traffic *into* that member crosses it. Because it runs beside the member, connections keep
their real source addresses, so iptables partitions still see who talks to whom.

Run as `python -m tests.faults.proxy LISTEN_HOST:PORT TARGET_HOST:PORT`; it prints `ready` once
listening and then obeys one command per stdin line:

* `delay MS JITTER_MS` — every chunk is held MS ± JITTER_MS (order within a stream kept);
* `drop P` — each chunk resets its connection with probability P (the sender reconnects);
* `pause` — stop forwarding (bytes wait in bounded buffers, connections stay open);
* `blackhole` — forward nothing; on `heal` every connection that saw the blackhole is reset,
  because what it swallowed can never be delivered;
* `heal` — back to a plain pass-through.

EOF on stdin stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

CHUNK = 64 * 1024
QUEUE_CHUNKS = 256  # per direction: a full queue stops reading, so memory stays bounded


@dataclass(slots=True)
class Conditions:
    """What the link does now; changed only by commands (one asyncio thread, no locks)."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    drop: float = 0.0
    paused: bool = False
    blackhole: bool = False
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    epoch: int = 0  # bumped at each heal of a blackhole: older connections must die

    def __post_init__(self) -> None:
        self.resumed.set()


class Proxy:
    def __init__(self, target: tuple[str, int], seed: int = 0) -> None:
        self.target = target
        self.cond = Conditions()
        self.rng = random.Random(seed)
        self.links: set[Link] = set()

    def command(self, line: str) -> str:
        words = line.split()
        if not words:
            return ""
        verb, args = words[0], words[1:]
        c = self.cond
        if verb == "delay":
            c.delay_s, c.jitter_s = float(args[0]) / 1000, float(args[1]) / 1000
        elif verb == "drop":
            c.drop = float(args[0])
            assert 0.0 <= c.drop <= 1.0
        elif verb == "pause":
            c.paused = True
            c.resumed.clear()
        elif verb == "blackhole":
            c.blackhole = True
            c.resumed.clear()
        elif verb == "heal":
            if c.blackhole:
                for link in list(self.links):
                    if link.saw_blackhole:
                        link.close()
            c.delay_s = c.jitter_s = c.drop = 0.0
            c.paused = c.blackhole = False
            c.resumed.set()
        else:
            return f"error unknown command {verb!r}"
        return "ok"

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        link = Link(self, writer, up_writer)
        self.links.add(link)
        try:
            await asyncio.gather(link.pipe(reader, up_writer), link.pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError, ConnectionResetError):
            pass
        finally:
            link.close()
            self.links.discard(link)


class Link:
    """One proxied connection: two directions, each a bounded queue of timestamped chunks."""

    def __init__(self, proxy: Proxy, down: asyncio.StreamWriter, up: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.writers = (down, up)
        self.saw_blackhole = False
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for w in self.writers:
            with contextlib.suppress(Exception):
                # A reset, like a broken link, not a polite FIN: linger 0 makes close send RST.
                sock = w.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(Exception):
                w.transport.abort()
        for task in self.tasks:
            task.cancel()  # a reader blocked on a full queue would otherwise wait forever

    async def pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            last_due = 0.0
            while not self.closed:
                data = await src.read(CHUNK)
                if not data:
                    await queue.put((0.0, b""))
                    return
                c = self.proxy.cond
                jitter = self.proxy.rng.uniform(-c.jitter_s, c.jitter_s) if c.jitter_s else 0.0
                # Never earlier than the previous chunk: TCP keeps order, so must we.
                last_due = max(last_due, time.monotonic() + max(0.0, c.delay_s + jitter))
                await queue.put((last_due, data))

        async def write() -> None:
            while not self.closed:
                due, data = await queue.get()
                c = self.proxy.cond
                while not c.resumed.is_set():
                    self.saw_blackhole |= c.blackhole
                    await c.resumed.wait()
                    if self.closed:
                        return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                if c.drop and self.proxy.rng.random() < c.drop:
                    self.close()
                    return
                dst.write(data)
                await dst.drain()

        tasks = [asyncio.ensure_future(read()), asyncio.ensure_future(write())]
        self.tasks.extend(tasks)
        await asyncio.gather(*tasks)


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    proxy = Proxy(target)
    server = await asyncio.start_server(proxy.accept, *listen, reuse_address=True)
    loop = asyncio.get_running_loop()
    # Connections still open at exit are cancelled by asyncio.run: expected, not worth a trace.
    loop.set_exception_handler(lambda lp, ctx: None if isinstance(
        ctx.get("exception"), asyncio.CancelledError) else lp.default_exception_handler(ctx))
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("ready", flush=True)
    async with server:
        while line := await stdin.readline():
            print(proxy.command(line.decode()), flush=True)
    for link in list(proxy.links):
        link.close()


def _addr(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main(argv: list[str]) -> None:
    assert len(argv) == 2, "usage: python -m tests.faults.proxy LISTEN_HOST:PORT TARGET_HOST:PORT"
    asyncio.run(serve(_addr(argv[0]), _addr(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])

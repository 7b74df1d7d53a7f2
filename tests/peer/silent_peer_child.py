"""Run inside a network namespace of its own (test_silent_peer.py): two transports on its
loopback, then every packet to and from the second one's port dropped by iptables, so the
first one's stream to it dies without a reset. Prints one JSON line: what the first one saw.

A peer that vanishes this way (power cut, cable, partition) sends nothing, not even a reset;
only TCP keep-alive and TCP_USER_TIMEOUT (stream.keep_alive) can end such a stream.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time

from etcdpy.peer.options import TransportOptions

from .conftest import RAW_STREAMS, RecordingSink, app, make_transport, url_of, wait_until

KEEPALIVE_S = 1.0  # idle and probe time: the stream should end ~2 s after the cut
GONE_WITHIN_S = 30.0  # the bound the child waits; the test asserts a tighter one


def _drop_port(port: int) -> None:
    for match in ("--dport", "--sport"):
        subprocess.run(["iptables", "-w", "-I", "INPUT", "-p", "tcp", match, str(port),
                        "-j", "DROP"], check=True, timeout=20)


async def main() -> dict[str, object]:
    options = TransportOptions(keepalive_time_s=KEEPALIVE_S, keepalive_timeout_s=KEEPALIVE_S)
    s1, s2 = RecordingSink(), RecordingSink()
    with tempfile.TemporaryDirectory() as tmp:
        t1 = make_transport(1, s1, tmp, options=options)
        t2 = make_transport(2, s2, tmp, options=options)
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [url_of(t2)])
            t1.send([app(1, 2, 0)])
            await wait_until(lambda: len(s2.processed) == 1, "the first message")
            await wait_until(lambda: t1.active_since(2) is not None, "an active stream")
            kind = t1.stream_kind(2)
            _drop_port(t2.listen_ports()[0])
            cut = time.monotonic()
            # Some messages in flight after the cut: TCP_USER_TIMEOUT bounds unacknowledged
            # data, keep-alive an idle connection; both ways must end the stream.
            for index in range(1, 20):
                t1.send([app(1, 2, index)])
                await asyncio.sleep(0.05)
            await wait_until(lambda: t1.active_since(2) is None, "the stream to end",
                             timeout_s=GONE_WITHIN_S)
            ended_after = time.monotonic() - cut
            await wait_until(lambda: 2 in s1.unreachable, "an unreachable report",
                             timeout_s=GONE_WITHIN_S)
            return {"stream": kind, "ended_after_s": ended_after,
                    "delivered_after_cut": len(s2.processed) - 1}
        finally:
            await t1.stop()
            await t2.stop()


if __name__ == "__main__":
    RAW_STREAMS[0] = sys.argv[1] == "raw"
    print(json.dumps(asyncio.run(main())), flush=True)
    sys.exit(0)
